"""Fully connected models: the lecture's logistic model and MLP, a general MLP, the bench MLP."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ._base import DEFAULT_SEED, with_config, register, seeded

__all__ = ["LogisticModel", "SimpleMLP", "MLP", "bench_mlp", "ACTIVATIONS"]

ACTIVATIONS = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
    "softplus": nn.Softplus, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "silu": nn.SiLU,
}


def _positive_int(name: str, v) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}.")
    return v


@register("logistic")
class LogisticModel(nn.Module):
    """The lecture's logistic model: ``sigmoid(linear(x))``, nvars + 1 parameters."""

    def __init__(self, nvars: int, *, seed: int | None = DEFAULT_SEED) -> None:
        super().__init__()
        _positive_int("nvars", nvars)
        with seeded(seed):
            self.linear = nn.Linear(nvars, 1)
            self.activation = nn.Sigmoid()
        with_config(self, {"name": "logistic", "nvars": nvars, "seed": seed})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))


@register("simple_mlp")
class SimpleMLP(nn.Module):
    """The lecture's MLP: nvars -> 4 -> 4 -> 1, ReLU hidden, sigmoid output (37 params for 2 vars).

    As in the lecture, one ``hidden_activ`` module is applied after both hidden layers.
    """

    def __init__(self, nvars: int, *, seed: int | None = DEFAULT_SEED) -> None:
        super().__init__()
        _positive_int("nvars", nvars)
        with seeded(seed):
            self.hidden_layer1 = nn.Linear(nvars, 4)
            self.hidden_layer2 = nn.Linear(4, 4)
            self.output_layer = nn.Linear(4, 1)
            self.hidden_activ = nn.ReLU()
            self.output_activ = nn.Sigmoid()
        with_config(self, {"name": "simple_mlp", "nvars": nvars, "seed": seed})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden_activ(self.hidden_layer1(x))
        h = self.hidden_activ(self.hidden_layer2(h))
        return self.output_activ(self.output_layer(h))


@register("mlp")
class MLP(nn.Module):
    """``n_in -> hidden[0] -> ... -> out`` with one activation module per hidden layer.

    The output is linear (logits / regression value). Layers live in ``self.layers``
    (an ``nn.Sequential``: ``layers.0`` Linear, ``layers.1`` activation, ...).
    """

    def __init__(self, n_in: int, hidden: Sequence[int] = (64, 64), activation: str = "relu",
                 out: int = 1, *, seed: int | None = DEFAULT_SEED) -> None:
        super().__init__()
        _positive_int("n_in", n_in)
        _positive_int("out", out)
        hidden = [int(_positive_int("hidden width", h)) for h in hidden]
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}.")
        sizes = [n_in, *hidden]
        with seeded(seed):
            mods: list[nn.Module] = []
            for a, b in zip(sizes[:-1], sizes[1:]):
                mods += [nn.Linear(a, b), ACTIVATIONS[activation]()]
            mods.append(nn.Linear(sizes[-1], out))
            self.layers = nn.Sequential(*mods)
        with_config(self, {"name": "mlp", "n_in": n_in, "hidden": hidden, "activation": activation,
                      "out": out, "seed": seed})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def bench_mlp(seed: int = DEFAULT_SEED) -> MLP:
    """The benchmark MLP: 20 -> 64 -> 64 -> 1 with ReLU, in eval mode."""
    return MLP(20, [64, 64], "relu", 1, seed=seed)
