"""Backpropagation by hand (lecture equations 2, 6-9) against finite differences and autograd."""

import numpy as np
import pytest
import torch

from attrkit.models import SimpleMLP
from attrkit.lecture_numpy import LectureMLP, gradcheck, relative_error

COMBOS = [
    ("relu", "sigmoid", "mse"),          # the lecture's network
    ("sigmoid", "sigmoid", "cross_entropy"),
    ("relu", "identity", "mse"),
    ("sigmoid", "softmax", "cross_entropy"),
    ("identity", "relu", "mse"),
]


def _problem(output, n=24, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    if output == "softmax":
        return X, rng.integers(0, 3, n), 3
    return X, (X[:, 0] * X[:, 1] > 0).astype(float), 1


def _torch_loss(net, out, y):
    t = torch.from_numpy(net._targets(y, out.shape[0]))
    if net.loss == "mse":
        return ((out - t) ** 2).sum()
    if net.output == "softmax":
        return -(t * torch.log(out)).sum()
    return torch.nn.functional.binary_cross_entropy(out, t, reduction="sum")


@pytest.mark.parametrize("hidden,output,loss", COMBOS)
def test_backprop_equals_finite_differences(hidden, output, loss):
    X, y, k = _problem(output)
    net = LectureMLP([3, 5, 4, k], hidden, output, loss, seed=1)
    analytic = net.backward(X, y)
    numeric = gradcheck(lambda: net.loss_value(X, y), net.betas, eps=1e-6)
    assert [g.shape for g in analytic] == [b.shape for b in net.betas]
    assert relative_error(analytic, numeric) < 1e-6


@pytest.mark.parametrize("hidden,output,loss", COMBOS)
def test_backprop_equals_autograd(hidden, output, loss):
    X, y, k = _problem(output)
    net = LectureMLP([3, 5, 4, k], hidden, output, loss, seed=2)
    analytic = net.backward(X, y)
    twin = net.to_torch()
    out = twin(torch.from_numpy(X))
    np.testing.assert_allclose(out.detach().numpy(), net.forward(X), rtol=0, atol=1e-12)
    L = _torch_loss(net, out, y)
    assert abs(L.item() - net.loss_value(X, y)) < 1e-9
    L.backward()
    auto = [np.vstack([m.bias.grad.numpy()[None], m.weight.grad.numpy().T])
            for m in twin if isinstance(m, torch.nn.Linear)]
    assert relative_error(analytic, auto) < 1e-10


def test_bias_column_shapes_follow_the_lecture_table():
    net = LectureMLP([2, 4, 4, 1])
    assert [b.shape for b in net.betas] == [(3, 4), (5, 4), (5, 1)]     # (k_prev + 1) x k
    assert sum(b.size for b in net.betas) == 37 == sum(p.numel() for p in SimpleMLP(2).parameters())
    X = np.random.default_rng(0).normal(size=(7, 2))
    # equation (2) written out for the first layer: relu([1, X] . beta1)
    first = np.maximum(np.hstack([np.ones((7, 1)), X]) @ net.betas[0], 0)
    net.forward(X)
    np.testing.assert_allclose(np.maximum(net._cache["z"][0], 0), first)


def test_lecture_mlp_matches_the_lectures_simple_mlp():
    net = LectureMLP([2, 4, 4, 1], "relu", "sigmoid", "mse", seed=5)
    model = SimpleMLP(nvars=2).double()
    with torch.no_grad():
        for lin, beta in zip([model.hidden_layer1, model.hidden_layer2, model.output_layer], net.betas):
            lin.weight.copy_(torch.from_numpy(beta[1:].T.copy()))
            lin.bias.copy_(torch.from_numpy(beta[0].copy()))
    X = np.random.default_rng(1).normal(size=(10, 2))
    np.testing.assert_allclose(model(torch.from_numpy(X)).detach().numpy(), net(X), atol=1e-12)


def test_gradcheck_catches_a_wrong_gradient():
    X, y, k = _problem("sigmoid")
    net = LectureMLP([3, 4, k], "relu", "sigmoid", "mse", seed=0)
    good = net.backward(X, y)
    numeric = gradcheck(lambda: net.loss_value(X, y), net.betas)
    bad = [g.copy() for g in good]
    bad[0][0, 0] += 0.1 * np.abs(good[0]).max()
    assert relative_error(bad, numeric) > 1e-3
    assert relative_error(good, numeric) < 1e-6


def test_gradient_descent_trains_a_small_problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(float)        # XOR-like: needs the hidden layers
    net = LectureMLP([2, 8, 8, 1], "relu", "sigmoid", "cross_entropy", seed=0)
    before = net.loss_value(X, y) / len(X)
    hist = net.train(X, y, lr=0.5, epochs=500)
    assert len(hist) == 500 and hist[-1] < 0.1 * before
    assert ((net(X)[:, 0] > 0.5) == y).mean() > 0.95


def test_lecture_mlp_rejects_bad_input():
    with pytest.raises(ValueError, match="hidden"):
        LectureMLP([2, 3, 1], hidden="tanhh")
    with pytest.raises(ValueError, match="softmax"):
        LectureMLP([2, 3, 2], output="softmax", loss="mse")
    with pytest.raises(ValueError, match="betas"):
        LectureMLP([2, 3, 1], betas=[np.zeros((2, 3)), np.zeros((4, 1))])
    with pytest.raises(ValueError, match="n x 2"):
        LectureMLP([2, 3, 1]).forward(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="eps"):
        gradcheck(lambda: 0.0, [np.zeros(2)], eps=0)
