"""Shared fixtures: small models (random and trained in seconds) used across the suite.

Margins. A test that depends on a trained model or a random draw states, beside its assertion, the spread of
the asserted quantity measured over: the shipped zoo and the zoo retrained with 2 torch threads and with seeds 1
and 2 (``python -m attrkit.zoo --threads T --seed S --out DIR``, read through ``ATTRKIT_ZOO_WEIGHTS=DIR``), the
suite run with 1 and 2 threads (``OMP_NUM_THREADS``), with ``torch.backends.mkldnn`` disabled (a proxy for another
CPU), and the trained fixtures below trained with seeds 1 and 2. The knobs, for that measurement only (``make
test`` sets none of them):

- ``ATTRKIT_TEST_SEED=k``: ``trained_mlp`` / ``trained_cnn`` initialise and shuffle with seed k (default 0);
- ``ATTRKIT_TEST_NO_MKLDNN=1``: ``torch.backends.mkldnn.enabled = False`` for the whole run;
- ``ATTRKIT_MARGINS_LOG=file``: ``record(name, value)`` appends each measured quantity to that JSON-lines file
  (``ATTRKIT_MARGINS_VARIANT`` labels the run).
"""
import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

os.environ.setdefault("ATTRKIT_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "attrkit"))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
if os.environ.get("ATTRKIT_TEST_NO_MKLDNN") == "1":
    torch.backends.mkldnn.enabled = False
    # the same setting in every Python subprocess the tests start (Ray workers, a killed run's driver), so results
    # compared across processes are computed alike: a sitecustomize module on their PYTHONPATH
    import tempfile
    _site = Path(tempfile.mkdtemp(prefix="attrkit-no-mkldnn-"))
    (_site / "sitecustomize.py").write_text("import torch\ntorch.backends.mkldnn.enabled = False\n")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(_site), os.environ.get("PYTHONPATH")) if p)
TEST_SEED = int(os.environ.get("ATTRKIT_TEST_SEED", "0"))


def record(name: str, value):
    """`value` (returned unchanged); logged under `name` when ATTRKIT_MARGINS_LOG is set (margin measurement)."""
    log = os.environ.get("ATTRKIT_MARGINS_LOG")
    if log:
        v = value.tolist() if hasattr(value, "tolist") else value
        with open(log, "a") as fh:
            fh.write(json.dumps({"name": name, "value": v, "variant": os.environ.get("ATTRKIT_MARGINS_VARIANT", ""),
                                 "threads": torch.get_num_threads()}) + "\n")
    return value


class TinyCNN(nn.Module):
    """conv-relu-conv-relu-pool-linear; one ReLU module per use (relevance rules need that)."""

    def __init__(self, in_ch=3, classes=4, size=16, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, 6, 3, padding=1), nn.ReLU(),
            nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8 * (size // 2) ** 2, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def tiny_mlp(n_in=5, classes=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, classes))


@pytest.fixture
def cnn():
    return TinyCNN().eval()


@pytest.fixture
def mlp():
    return tiny_mlp().eval()


def _fit(model, x, y, epochs, lr=1e-2, batch=64, seed=TEST_SEED):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def trained_mlp():
    """An MLP trained on scikit-learn's breast-cancer data (standardised): (model, x_test)."""
    from sklearn.datasets import load_breast_cancer
    d = load_breast_cancer()
    x = torch.tensor(d.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(d.target)
    torch.manual_seed(TEST_SEED)
    model = nn.Sequential(nn.Linear(30, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
    _fit(model, x[:450], y[:450], epochs=30)
    return model, x[450:]


@pytest.fixture(scope="session")
def trained_cnn():
    """A small CNN trained on scikit-learn's 8x8 digits: (model, x_test [N, 1, 8, 8])."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(d.target)
    torch.manual_seed(TEST_SEED)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 16, 32), nn.ReLU(), nn.Linear(32, 10))
    _fit(model, x[:1400], y[:1400], epochs=6)
    return model, x[1400:]


@pytest.fixture(scope="session")
def shapes_cnn():
    """The zoo's CNN for the built-in shapes images (shipped weights) and 8 of its held-out images: (model, x)."""
    from attrkit import zoo
    return zoo.pretrained("shapes_cnn").eval(), zoo.dataset("shapes_cnn").x[:8]
