"""Contract tests over the whole registry: every method, with its defaults, keeps the same promises.

- hooks are removed after every call, also after a call that raised, and the model's modes are restored;
- results are identical for batch sizes 1, 2 and 3;
- a per-sample target list equals per-sample calls (deterministic methods), sampled methods are
  reproducible under a seed.
"""
import inspect

import pytest
import torch
from torch import nn

import attrkit as ak
from attrkit.core.modules import count_hooks
from conftest import TinyCNN, tiny_mlp

ALL = sorted(ak.methods())


def _options(spec, x):
    opts = {}
    if spec.players:
        if x.dim() == 4:
            labels = torch.zeros(x.shape[-2:], dtype=torch.long)
            h, w = x.shape[-2] // 2, x.shape[-1] // 2
            labels[:h, w:], labels[h:, :w], labels[h:, w:] = 1, 2, 3
            opts["players"] = labels   # [H, W]: shared by all samples and channels
    params = inspect.signature(spec.fn).parameters
    if "n_samples" in params:
        opts["n_samples"] = 16 if spec.players else 4
    if "steps" in params:
        opts["steps"] = 4
    if spec.sampled:
        opts["seed"] = 0
    return opts


def _cases(spec):
    """(model, x, layer) combinations this method is expected to support."""
    if spec.family == "attention":
        return [("vit", None)]
    cases = [("cnn", None)]
    if spec.layer == "required":
        return [("cnn", None)]
    if spec.family in ("gradient", "game") or spec.layer == "optional":
        cases.append(("mlp", None))
    if spec.layer == "optional":
        cases.append(("cnn", "features.2"))
    return cases


def _make(kind):
    if kind == "cnn":
        return TinyCNN().eval(), torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    if kind == "vit":
        from nets_transformer import TinyViT
        return TinyViT().eval(), torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return tiny_mlp().eval(), torch.randn(3, 5, generator=torch.Generator().manual_seed(0))


def _close(a, b):
    scale = b.abs().max().clamp_min(1e-8)
    return float((a - b).abs().max() / scale) < 1e-5


class FailsOnCall(nn.Module):
    """Wraps a model and raises on its k-th forward call (to test clean-up after an error)."""

    def __init__(self, inner, k):
        super().__init__()
        self.inner, self.k, self.calls = inner, k, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.k:
            raise RuntimeError("boom")
        return self.inner(x)


@pytest.mark.parametrize("name", ALL)
def test_contract(name):
    spec = ak.methods()[name]
    for kind, layer in _cases(spec):
        model, x = _make(kind)
        opts = _options(spec, x)
        if kind == "mlp" and "players" in opts:
            opts.pop("players")   # default: one player per column
        layer_kw = {"layer": layer} if layer else {}
        hooks = count_hooks(model)
        targets = [0, 2, 1]
        runs = [ak.explain(model, x, name, target=targets, batch_size=b, **layer_kw, **opts) for b in (1, 2, 3)]
        assert count_hooks(model) == hooks, f"{name}: hooks left behind"
        assert not model.training
        for r in runs[1:]:
            assert _close(r.values, runs[0].values), f"{name} ({kind}, {layer}): batch size changes the result"
        a = runs[0]
        assert a.values.shape[0] == 3 and torch.isfinite(a.values).all()
        assert a.info["n_evals"] > 0 and a.info["seconds"] >= 0
        if spec.sampled:
            again = ak.explain(model, x, name, target=targets, **layer_kw, **opts)
            assert torch.equal(again.values, ak.explain(model, x, name, target=targets, **layer_kw, **opts).values)
        else:
            for i, t in enumerate(targets):
                one = ak.explain(model, x[i:i + 1], name, target=t, **layer_kw,
                                 **{k: (v[i:i + 1] if isinstance(v, torch.Tensor) and v.shape[:1] == (3,) else v)
                                    for k, v in opts.items()})
                assert _close(one.values[0], a.values[i]), f"{name} ({kind}, {layer}): sample {i} differs alone"
        # an error in the middle of the computation leaves no hook behind and restores train mode
        model.train()
        failing = FailsOnCall(model, k=3)
        with pytest.raises(Exception):
            ak.explain(failing, x, name, target=targets, batch_size=1, **layer_kw, **opts)
        assert count_hooks(model) == hooks, f"{name}: hooks left behind after an error"
        assert model.training and all(m.training for m in model.modules())
