"""Backpropagation by hand: a NumPy MLP following the lecture's matrix equations.

Notation (lecture 3, "Neural networks"): ``X_{<-x0}`` is X with a leading column of ones (the
constant), ``beta^(l)`` has shape ``(k^(l-1) + 1) x k^(l)`` with the bias in row 0.

- forward, eq. (2):   ``Z^(l) = X^(l-1)_{<-x0} . beta^(l)``,  ``X^(l) = sigma^(l)(Z^(l))``
- output error, (6):  ``delta^(L) = L'(X^(L)) (*) sigma'^(L)(Z^(L))``
- hidden error, (7):  ``delta^(l) = delta^(l+1)_{->x0} . beta^(l+1)T (*) sigma'^(l)(Z^(l)_{<-x0})``
  (a column of ones is added to Z so the shapes match; the bias column of the result is
  removed, ``_{->x0}``, because the constant is not connected to the previous layer)
- gradient, (8):      ``dL/dbeta^(l) = X^(l-1)T_{<-x0} . delta^(l)_{->x0}`` (summed over observations)
- update, (9):        ``beta^(l) <= beta^(l) - eta / n * dL/dbeta^(l)``

The loss is summed over observations (equation 8 sums the per-observation gradients); `train`
divides by n as equation (9) does. `gradcheck` checks any gradient by central differences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

__all__ = ["LectureMLP", "gradcheck", "relative_error", "ACTIVATIONS", "LOSSES"]


# ------------------------------------------------------------- activations and losses
def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


ACTIVATIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = {
    # name: (sigma, sigma')
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(z.dtype)),
    "identity": (lambda z: z, lambda z: np.ones_like(z)),
}

LOSSES = ("mse", "cross_entropy")


def _add_ones(a: np.ndarray) -> np.ndarray:
    """``A_{<-x0}``: prepend a column of ones."""
    return np.hstack([np.ones((a.shape[0], 1), dtype=a.dtype), a])


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class LectureMLP:
    """A fully connected network in NumPy with hand-written forward and backward passes.

    sizes:      ``[k0, k1, ..., kL]`` (inputs, hidden widths, outputs); the lecture's network is
                ``[2, 4, 4, 1]``.
    hidden:     activation of the hidden layers: "sigmoid", "relu" or "identity".
    output:     activation of the output layer: "sigmoid", "relu", "identity", or "softmax"
                (only with cross-entropy, where delta^(L) = softmax(Z) - Y).
    loss:       "mse" (sum over observations and outputs of (x^(L) - y)^2) or "cross_entropy"
                (binary with a sigmoid output: -[y log p + (1-y) log(1-p)]; multi-class with
                softmax: -sum_k Y_k log p_k, y given as integer labels or one-hot rows).
    betas:      list of ``(k_{l-1} + 1) x k_l`` matrices, row 0 the bias; drawn from
                N(0, 1 / k_{l-1}) under `seed` unless given.
    """

    sizes: Sequence[int]
    hidden: str = "relu"
    output: str = "sigmoid"
    loss: str = "mse"
    seed: int = 0
    dtype: type = np.float64
    betas: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sizes = [int(k) for k in self.sizes]
        if len(self.sizes) < 2 or min(self.sizes) < 1:
            raise ValueError(f"sizes must list >= 2 positive widths (inputs ... outputs), got {self.sizes}.")
        if self.hidden not in ACTIVATIONS:
            raise ValueError(f"hidden must be one of {sorted(ACTIVATIONS)}, got {self.hidden!r}.")
        if self.output not in (*ACTIVATIONS, "softmax"):
            raise ValueError(f"output must be one of {sorted(ACTIVATIONS) + ['softmax']}, got {self.output!r}.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}.")
        if self.output == "softmax" and self.loss != "cross_entropy":
            raise ValueError("output='softmax' is supported with loss='cross_entropy' only.")
        if self.loss == "cross_entropy" and self.output not in ("sigmoid", "softmax"):
            raise ValueError("cross-entropy needs probabilities: use output='sigmoid' or 'softmax'.")
        if not self.betas:
            rng = np.random.default_rng(self.seed)
            self.betas = [rng.normal(0.0, 1.0 / np.sqrt(a), size=(a + 1, b)).astype(self.dtype)
                          for a, b in zip(self.sizes[:-1], self.sizes[1:])]
        else:
            self.betas = [np.asarray(b, dtype=self.dtype) for b in self.betas]
            want = [(a + 1, b) for a, b in zip(self.sizes[:-1], self.sizes[1:])]
            got = [b.shape for b in self.betas]
            if got != want:
                raise ValueError(f"betas must have shapes {want} ((k_prev + 1) x k), got {got}.")
        self._cache: dict[str, list[np.ndarray]] | None = None

    # -------------------------------------------------------------------- helpers
    @property
    def n_layers(self) -> int:
        return len(self.betas)

    def _act(self, layer: int) -> str:
        """Activation name of layer l = 1..L."""
        return self.output if layer == self.n_layers else self.hidden

    def _targets(self, y: np.ndarray, n: int) -> np.ndarray:
        y = np.asarray(y)
        k = self.sizes[-1]
        if self.output == "softmax" and y.ndim == 1:
            if not np.issubdtype(y.dtype, np.integer):
                raise ValueError("softmax cross-entropy needs integer labels or one-hot rows.")
            return np.eye(k, dtype=self.dtype)[y]
        y = y.astype(self.dtype).reshape(n, -1)
        if y.shape[1] != k:
            raise ValueError(f"y has {y.shape[1]} columns but the network has {k} outputs.")
        return y

    # --------------------------------------------------------------- forward (2)
    def forward(self, X: np.ndarray) -> np.ndarray:
        """``X^(L)`` for inputs ``X`` (n x k0); stores Z^(l) and X^(l)_{<-x0} for `backward`."""
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"X must be n x {self.sizes[0]}, got shape {X.shape}.")
        xs, zs = [], []
        a = X
        for layer, beta in enumerate(self.betas, start=1):
            xb = _add_ones(a)                  # X^(l-1)_{<-x0}
            z = xb @ beta                      # Z^(l)
            name = self._act(layer)
            a = _softmax(z) if name == "softmax" else ACTIVATIONS[name][0](z)
            xs.append(xb)
            zs.append(z)
        self._cache = {"x": xs, "z": zs, "out": [a]}
        return a

    __call__ = forward

    def loss_value(self, X: np.ndarray, y: np.ndarray) -> float:
        """The loss summed over observations."""
        out = self.forward(X)
        Y = self._targets(y, out.shape[0])
        if self.loss == "mse":
            return float(np.sum((out - Y) ** 2))
        tiny = np.finfo(self.dtype).tiny
        if self.output == "softmax":
            return float(-np.sum(Y * np.log(np.maximum(out, tiny))))
        return float(-np.sum(Y * np.log(np.maximum(out, tiny))
                             + (1 - Y) * np.log(np.maximum(1 - out, tiny))))

    # ---------------------------------------------------------- backward (6)-(8)
    def backward(self, X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        """Gradients ``dL/dbeta^(l)`` (same shapes as `betas`) of the summed loss."""
        out = self.forward(X)
        Y = self._targets(y, out.shape[0])
        xs, zs = self._cache["x"], self._cache["z"]
        L = self.n_layers
        # (6) delta^(L) = L'(X^(L)) (*) sigma'(Z^(L))
        if self.loss == "cross_entropy":
            # sigmoid: L' = (p - y) / (p (1 - p)) and sigma' = p (1 - p), so their product is
            # p - y (computed directly: the factored form is 0/0 once p saturates at 0 or 1);
            # softmax: the same p - Y for the combined softmax + cross-entropy.
            delta = out - Y
        else:
            delta = 2.0 * (out - Y) * ACTIVATIONS[self.output][1](zs[L - 1])
        grads: list[np.ndarray] = [None] * L  # type: ignore[list-item]
        grads[L - 1] = xs[L - 1].T @ delta                     # (8) for the output layer
        for layer in range(L - 1, 0, -1):                      # l = L-1, ..., 1 (0-based l-1)
            sig_prime = ACTIVATIONS[self.hidden][1](_add_ones(zs[layer - 1]))  # sigma'(Z_{<-x0})
            delta_full = (delta @ self.betas[layer].T) * sig_prime              # (7), n x (k+1)
            delta = delta_full[:, 1:]                                           # ->x0: drop bias
            grads[layer - 1] = xs[layer - 1].T @ delta                          # (8)
        return grads

    # ------------------------------------------------------------ training (9)
    def step(self, X: np.ndarray, y: np.ndarray, lr: float) -> float:
        """One gradient-descent update (9) on (X, y); returns the mean loss before the step."""
        n = np.asarray(X).shape[0]
        loss = self.loss_value(X, y) / n
        for beta, g in zip(self.betas, self.backward(X, y)):
            beta -= lr / n * g
        return loss

    def train(self, X: np.ndarray, y: np.ndarray, lr: float = 0.1, epochs: int = 100,
              batch_size: int | None = None, seed: int = 0) -> list[float]:
        """Plain (mini-batch) gradient descent with equation (9); returns the mean loss per epoch."""
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}.")
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}.")
        X = np.asarray(X, dtype=self.dtype)
        y = np.asarray(y)
        n = X.shape[0]
        bs = n if batch_size is None else int(batch_size)
        rng = np.random.default_rng(seed)
        history = []
        for _ in range(epochs):
            order = rng.permutation(n) if bs < n else np.arange(n)
            for s in range(0, n, bs):
                idx = order[s:s + bs]
                self.step(X[idx], y[idx], lr)
            history.append(self.loss_value(X, y) / n)
        return history

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.forward(X)

    # --------------------------------------------------------------- torch twin
    def to_torch(self):
        """The same network as a ``torch.nn.Sequential`` (float64), weights copied.

        ``Linear.weight = beta[1:].T`` and ``Linear.bias = beta[0]``.
        """
        import torch
        from torch import nn

        mods: list = []
        acts = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "identity": nn.Identity}
        for layer, beta in enumerate(self.betas, start=1):
            lin = nn.Linear(beta.shape[0] - 1, beta.shape[1]).double()
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(beta[1:].T)))
                lin.bias.copy_(torch.from_numpy(np.ascontiguousarray(beta[0])))
            mods.append(lin)
            name = self._act(layer)
            mods.append(nn.Softmax(dim=1) if name == "softmax" else acts[name]())
        return nn.Sequential(*mods)


# ------------------------------------------------------------------- gradient check
def gradcheck(f: Callable[[], float], params: Sequence[np.ndarray], eps: float = 1e-6) -> list[np.ndarray]:
    """Central finite differences ``(f(b + eps) - f(b - eps)) / (2 eps)`` for every entry of `params`.

    `f` takes no argument and reads `params` (arrays changed in place and restored), e.g.
    ``gradcheck(lambda: net.loss_value(X, y), net.betas)``. Returns arrays shaped like `params`.
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}.")
    grads = []
    for p in params:
        if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
            raise TypeError("gradcheck() needs float NumPy arrays it can change in place.")
        g = np.zeros_like(p)
        flat, gflat = p.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            up = f()
            flat[i] = old - eps
            down = f()
            flat[i] = old
            gflat[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def relative_error(a: Sequence[np.ndarray] | np.ndarray, b: Sequence[np.ndarray] | np.ndarray) -> float:
    """``||a - b|| / max(||a||, ||b||)`` over all arrays together (0 when both are zero)."""
    va = np.concatenate([np.ravel(x) for x in (a if isinstance(a, (list, tuple)) else [a])])
    vb = np.concatenate([np.ravel(x) for x in (b if isinstance(b, (list, tuple)) else [b])])
    scale = max(np.linalg.norm(va), np.linalg.norm(vb))
    return 0.0 if scale == 0 else float(np.linalg.norm(va - vb) / scale)
