"""ak.loss_landscape (Li et al. 2018): convex model -> convex surface with its minimum at the trained weights;
filter normalisation -> invariance to rescaling a ReLU layer's filters; batching, restoring, plots, errors."""
import copy

import numpy as np
import pytest
import torch

import attrkit as ak


def _logistic():
    """Logistic regression on non-separable data (labels drawn from the model), trained to convergence."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 3, generator=g, dtype=torch.float64)
    y = torch.bernoulli(torch.sigmoid(x @ torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64) + 0.3),
                        generator=g)
    model = torch.nn.Linear(3, 1).double()
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, tolerance_grad=1e-12,
                            tolerance_change=1e-15, line_search_fn="strong_wolfe")
    lossf = torch.nn.BCEWithLogitsLoss()

    def closure():
        opt.zero_grad()
        out = lossf(model(x)[:, 0], y)
        out.backward()
        return out
    opt.step(closure)
    closure()
    assert max(float(p.grad.abs().max()) for p in model.parameters()) < 1e-8     # converged
    return model, x, y


def test_logistic_regression_surface_is_convex_with_minimum_at_the_trained_weights():
    model, x, y = _logistic()
    before = [p.detach().clone() for p in model.parameters()]
    ls = ak.loss_landscape(model, (x, y.long()), directions=2, steps=11, span=1.0, seed=0, progress=False)
    assert ls.loss.shape == (11, 11) and ls.loss_name == "bce"
    z = ls.loss
    assert np.unravel_index(np.argmin(z), z.shape) == (5, 5)                     # the centre: trained weights
    assert abs(z[5, 5] - ls.center) < 1e-12
    assert (np.diff(z, 2, axis=0) >= -1e-12).all() and (np.diff(z, 2, axis=1) >= -1e-12).all()   # convex
    diag = np.array([z[i, i] for i in range(11)])
    assert (np.diff(diag, 2) >= -1e-12).all()
    assert z.max() > ls.center + 0.05                                            # and not flat
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))   # weights restored
    curve = ak.loss_landscape(model, (x, y), loss="bce", directions=1, steps=9, seed=0, progress=False)
    assert curve.loss.shape == (9,) and int(np.argmin(curve.loss)) == 4 and (np.diff(curve.loss, 2) >= -1e-12).all()


def _mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()


def test_filter_normalisation_is_invariant_to_rescaling_relu_filters():
    model = _mlp()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=g)
    scaled = copy.deepcopy(model)
    c = 7.0
    with torch.no_grad():                       # same function: relu(c z) = c relu(z), then 1/c
        scaled[0].weight.mul_(c)
        scaled[0].bias.mul_(c)
        scaled[2].weight.div_(c)
    assert torch.allclose(model(x), scaled(x), atol=1e-12)
    kw = dict(directions=2, steps=5, span=1.0, seed=3, progress=False)
    a = ak.loss_landscape(model, (x, y), **kw)
    b = ak.loss_landscape(scaled, (x, y), **kw)
    assert np.abs(a.loss - b.loss).max() < 1e-5
    # without normalisation the same draw gives another picture: the test above can fail
    a0 = ak.loss_landscape(model, (x, y), norm="none", **kw)
    b0 = ak.loss_landscape(scaled, (x, y), norm="none", **kw)
    assert np.abs(a0.loss - b0.loss).max() > 0.1


def test_batches_loaders_and_memory_budget_give_the_same_numbers():
    model = _mlp()
    x = torch.randn(50, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (50,))
    ref = ak.loss_landscape(model, (x, y), directions=1, steps=5, progress=False)
    small = ak.loss_landscape(model, (x, y), directions=1, steps=5, batch_size=7, progress=False)
    tiny = ak.loss_landscape(model, (x, y), directions=1, steps=5, max_memory=2000, progress=False)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    dl = ak.loss_landscape(model, loader, directions=1, steps=5, progress=False)
    for other in (small, tiny, dl):
        assert np.allclose(other.loss, ref.loss, atol=1e-12)
    assert tiny.info["n_rows"] == 50
    mse = ak.loss_landscape(model, (x, torch.randn(50, 3, dtype=torch.float64)), directions=1, steps=3,
                            progress=False)
    assert mse.loss_name == "mse"


def test_plots_and_errors(tmp_path):
    pytest.importorskip("matplotlib")
    model = _mlp()
    x, y = torch.randn(20, 4, dtype=torch.float64), torch.randint(0, 3, (20,))
    two = ak.loss_landscape(model, (x, y), directions=2, steps=4, progress=False)
    fig = two.plot(path=tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000
    assert any(getattr(ax, "name", "") == "3d" for ax in fig.axes) and len(fig.axes) == 3   # contour, bar, 3-d
    one = ak.loss_landscape(model, (x, y), directions=1, steps=4, progress=False)
    assert len(one.plot().axes) == 1 and len(one.table()) == 4 and len(two.table()) == 16
    with pytest.raises(ValueError, match="two directions"):
        two.plot("curve")
    with pytest.raises(ValueError, match="directions must be 1"):
        ak.loss_landscape(model, (x, y), directions=3)
    with pytest.raises(ValueError, match="steps"):
        ak.loss_landscape(model, (x, y), steps=1)
    with pytest.raises(ValueError, match="span"):
        ak.loss_landscape(model, (x, y), span=0)
    with pytest.raises(TypeError, match="nn.Module"):
        ak.loss_landscape(lambda t: t, (x, y))
    with pytest.raises(TypeError, match="data must be"):
        ak.loss_landscape(model, x)
    with pytest.raises(TypeError, match="one-pass iterator"):
        ak.loss_landscape(model, ((x[i:i + 5], y[i:i + 5]) for i in range(0, 20, 5)))
    per_row = ak.loss_landscape(model, (x, y), loss=lambda o, t: torch.nn.functional.cross_entropy(o, t, reduction="none"),
                                directions=1, steps=3, progress=False)
    mean = ak.loss_landscape(model, (x, y), directions=1, steps=3, progress=False)
    assert np.allclose(per_row.loss, mean.loss, atol=1e-12)                # a per-row loss is averaged


def test_cli_landscape(tmp_path, capsys):
    import json

    from attrkit.cli import main
    code = main(["landscape", "--model", "breast_cancer_mlp", "--limit", "60", "--steps", "3", "--directions", "1",
                 "--out", str(tmp_path), "--json"])
    assert code == 0
    got = json.loads(capsys.readouterr().out)
    assert got["exit"] == 0 and got["shape"] == [3] and (tmp_path / "landscape.png").is_file()
    saved = json.loads((tmp_path / "landscape.json").read_text())
    assert abs(saved["values"][1] - got["center"]) < 1e-6                  # the middle point: the trained weights
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3), np.float32), y=np.zeros(4, np.int64))
    assert main(["landscape", "--model", "breast_cancer_mlp", "--data", str(tmp_path / "d.npz"), "--out",
                 str(tmp_path)]) == 1                                      # 3 columns for a 30-feature model
    assert "landscape: error" in capsys.readouterr().err
    assert main(["landscape", "--model", "breast_cancer_mlp", "--directions", "3"]) == 2
    capsys.readouterr()
    assert main(["--json", "landscape", "--model", "no_such_model", "--out", str(tmp_path)]) == 1
    err = json.loads(capsys.readouterr().out)                              # errors as JSON too
    assert err["exit"] == 1 and "no such model" in err["error"]


def test_demo_landscape_figure_and_table(tmp_path):
    from attrkit.demo.landscape import caption, landscape_figures
    notes, tables = [], {}
    figs = landscape_figures(tmp_path, True, 0, notes, tables, progress=False, models=["breast_cancer_mlp"])
    assert notes == [] and (tmp_path / "landscape_breast_cancer_mlp.png").is_file()
    (row,) = next(iter(tables.values()))
    assert row["model"] == "breast_cancer_mlp" and row["grid min"] <= row["at the weights"] <= row["grid max"]
    assert "breast_cancer_mlp" in caption("landscape_breast_cancer_mlp") and caption("deletion_curves") is None
    assert list(figs) == ["landscape_breast_cancer_mlp"]


def test_biases_and_batch_norm_stay_put_and_the_model_is_restored():
    from attrkit.landscape import random_direction
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3))
    model.train()                                                   # left in train mode by the user
    x, y = torch.randn(16, 2, 6, 6), torch.randint(0, 3, (16,))
    model(x)                                                        # running statistics that are not the init
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    ls = ak.loss_landscape(model, (x, y), directions=1, steps=3, progress=False)
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
    d = random_direction(list(model.parameters()), torch.Generator().manual_seed(0))
    for (name, p), t in zip(model.named_parameters(), d):
        if p.dim() <= 1:                                            # biases, BN weight and bias: zero direction
            assert float(t.abs().max()) == 0, name
        else:                                                       # each filter has the norm of the weights'
            assert torch.allclose(t.reshape(t.shape[0], -1).norm(dim=1), p.reshape(p.shape[0], -1).norm(dim=1),
                                  rtol=1e-5)
    with torch.no_grad():                                           # eval mode: the centre is the eval loss
        model.eval()
        ref = float(torch.nn.functional.cross_entropy(model(x), y))
    assert abs(ls.center - ref) < 1e-6 and abs(ls.loss[1] - ref) < 1e-6
