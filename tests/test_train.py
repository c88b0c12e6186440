"""Training loop and safe model files (the zoo: tests/test_zoo.py)."""

import os

import pytest
import torch

from attrkit.data import breast_cancer, synthetic_tabular
from attrkit.models import MLP, LogisticModel, SmallCNN
from attrkit.train import evaluate, fit, load, pick_device, save


def _tiny_data(n=64, seed=0):
    d = synthetic_tabular(n, seed=seed)
    return d.split(0.25, seed=0)


# ----------------------------------------------------------------------------- fit
def test_training_is_reproducible_under_a_seed():
    train, val = _tiny_data()
    runs = []
    for seed in (0, 0, 1):
        m = MLP(6, [8], out=1, seed=0)
        hist = fit(m, train, val, epochs=3, lr=1e-2, batch_size=8, seed=seed, progress=False)
        runs.append((m.state_dict(), hist))
    (a, ha), (b, hb), (c, _) = runs
    assert all(torch.equal(a[k], b[k]) for k in a) and ha.train_loss == hb.train_loss
    assert not all(torch.equal(a[k], c[k]) for k in a)            # another shuffling order


def test_fit_learns_and_reports_history():
    d = breast_cancer()
    train, test = d.split(0.2, seed=0)
    m = LogisticModel(30)                       # ends in a Sigmoid: BCE on probabilities
    before = evaluate(m, test)["accuracy"]
    hist = fit(m, train, test, epochs=5, lr=1e-2, batch_size=64, progress=False)
    assert hist.loss == "bce" and hist.epochs == 5
    assert len(hist.val_loss) == 5 and len(hist.val_accuracy) == 5
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert hist.val_accuracy[-1] > max(0.9, before)
    assert abs(evaluate(m, test)["accuracy"] - hist.val_accuracy[-1]) < 1e-6
    assert not m.training
    logits = MLP(30, [8], out=2, seed=0)       # two logits: cross-entropy, argmax
    h2 = fit(logits, train, test, epochs=3, lr=1e-2, batch_size=64, schedule="onecycle",
             progress=False)
    assert h2.loss == "cross_entropy" and h2.val_accuracy[-1] > 0.9


def test_early_stopping_restores_the_best_weights():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g)
    y = torch.randn(40, generator=g)                      # pure noise: validation loss rises
    xv, yv = torch.randn(40, 5, generator=g), torch.randn(40, generator=g)
    m = MLP(5, [64, 64], out=1, seed=0)
    hist = fit(m, (x, y), (xv, yv), epochs=200, lr=1e-2, batch_size=8, patience=3, progress=False)
    assert hist.stopped_early and hist.epochs < 200
    assert hist.best_epoch == 1 + min(range(hist.epochs), key=hist.val_loss.__getitem__)
    assert hist.epochs == hist.best_epoch + 3
    mse = evaluate(m, (xv, yv))["mse"]
    assert abs(mse - min(hist.val_loss)) < 1e-5                # the weights of the best epoch


def test_fit_shows_progress_bars_that_can_be_silenced(capsys):
    train, val = _tiny_data()
    fit(MLP(6, [4], seed=0), train, val, epochs=2, batch_size=16, progress=True)
    err = capsys.readouterr().err
    assert "Epoch 1/2" in err and "Epoch 2/2" in err
    fit(MLP(6, [4], seed=0), train, val, epochs=2, batch_size=16, progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_fit_checks_its_arguments():
    train, val = _tiny_data()
    m = MLP(6, [4])
    with pytest.raises(ValueError, match="loss"):
        fit(m, train, loss="hinge", progress=False)
    with pytest.raises(ValueError, match="val="):
        fit(m, train, patience=2, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        fit(m, train, epochs=0, progress=False)
    with pytest.raises(TypeError, match="Dataset"):
        fit(m, [1, 2, 3], progress=False)
    with pytest.raises(ValueError, match="schedule"):
        fit(m, train, schedule="step", progress=False)
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda", "mps")


# ------------------------------------------------------------------- save / load
def test_save_and_load_round_trip(tmp_path):
    m = SmallCNN(1, 3, 16, seed=4)
    path = save(m, tmp_path / "sub" / "m.pt", meta={"classes": ["a", "b", "c"], "acc": 0.5})
    assert sorted(os.listdir(path.parent)) == ["m.pt"]                  # no temp file left
    back = load(path)
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(back(x), m(x)) and back.config == m.config and not back.training
    assert back.meta == {"classes": ["a", "b", "c"], "acc": 0.5}
    with pytest.raises(ValueError, match="config"):
        save(torch.nn.Linear(2, 2), tmp_path / "x.pt")


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_loading_never_runs_pickled_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    m = LogisticModel(2)
    torch.save({"config": m.config, "state_dict": m.state_dict(), "meta": {"x": _Evil(marker)}}, path)
    with pytest.raises(ValueError) as err:
        load(path)
    msg = str(err.value)
    assert "weights_only" in msg and "trust=True" in msg
    assert not marker.exists()


def test_load_rejects_files_that_are_not_models(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not an attrkit model"):
        load(tmp_path / "plain.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError):
        load(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="no model file"):
        load(tmp_path / "missing.pt")


# The zoo (shipped weights, checksums, recipes, held-out bands): tests/test_zoo.py.
