"""What every experiment starts from: a trained zoo model with held-out samples, the layer for layer-level maps,
a chance-level random map, and one progress bar per experiment."""
from __future__ import annotations

import functools
import logging
import os

import torch

log = logging.getLogger("attrkit.experiments")

ZOO_DATA = {"shapes_cnn": "shapes", "digits_cnn": "digits", "faces_cnn": "faces",
            "breast_cancer_mlp": "breast_cancer", "diabetes_mlp": "diabetes"}


def _zoo(name: str, progress):
    from .. import zoo
    return zoo.pretrained(name, progress=bool(progress) if progress is not None else False)


def load_model_and_data(model: str = "shapes_cnn", data: str | None = None, *, n: int = 16, seed: int = 0,
                        progress: bool | None = None):
    """A trained model (a zoo name, trained and cached on first use, or a file from ``attrkit.train.save``) and
    ``n`` held-out samples: generated images with a seed never used for training (``10000 + seed``), or a
    seeded pick from the zoo model's held-out split."""
    if os.path.exists(str(model)):
        from ..train import load
        net, name = load(model), None
    else:
        if model not in ZOO_DATA:
            raise ValueError(f"unknown model {model!r}: give a zoo name ({', '.join(ZOO_DATA)}) or a model file")
        net, name = _zoo(model, progress), model
    data = data or (ZOO_DATA.get(name) if name else None)
    if data is None:
        raise ValueError("a model file needs data= (e.g. shapes, digits, breast_cancer)")
    net.eval()
    return net, held_out(data, n, seed, net, name)


def held_out(data: str, n: int, seed: int, model=None, zoo_name: str | None = None):
    """``n`` samples the model never trained on: generated shapes with seed ``10000 + seed`` (at the model's
    input size), the zoo model's test split, or a seeded pick from a built-in data set."""
    from .. import data as D
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if data in ("shapes", "shapes_pairs"):
        return getattr(D, data)(n=n, size=_input_size(model) or 64, seed=10_000 + seed, progress=False)
    if zoo_name is not None and ZOO_DATA.get(zoo_name) == data:
        from .. import zoo
        ds = zoo.dataset(zoo_name, "test")
    elif hasattr(D, data) and data in D.__all__:
        ds = getattr(D, data)()
    else:
        raise ValueError(f"unknown data set {data!r}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[:min(n, len(ds))]
    return ds.subset(idx)


def _input_size(model) -> int | None:
    cfg = getattr(model, "config", None) or {}
    return cfg.get("in_size") if isinstance(cfg, dict) else None


def last_conv_layer(model) -> str:
    """The layer for layer-level maps: the ReLU after the last convolution (``model.last_relu``) when the model
    names it, else the last ``Conv2d``."""
    for attr in ("last_relu", "last_conv"):
        name = getattr(model, attr, None)
        if isinstance(name, str):
            return name
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise ValueError("the model has no convolutional layer")
    return convs[-1]


def levels(model) -> list[tuple[str, str | None]]:
    """``(level, layer)`` pairs of the experiments: the input pixels and the last conv layer."""
    return [("pixel", None), ("layer", last_conv_layer(model))]


def explain_pair(model, x, method, targets, layer, opts, batch_size, progress):
    """One attribution per target (class A, class B) with the same settings."""
    from ..api import explain
    kw = dict(opts)
    if layer is not None:
        kw["layer"] = layer
    return [explain(model, x, method=method, target=t, batch_size=batch_size, progress=progress, **kw)
            for t in targets]


def random_attr(x, seed):
    """A uniform random map shaped like ``x``: the chance row of every table."""
    from ..attribution import Attribution
    g = torch.Generator().manual_seed(int(seed))
    return Attribution(values=torch.rand(x.shape, generator=g).to(x), method="random", inputs=x)


def one_bar(fn):
    """One progress bar for the whole experiment: the ``explain`` calls and metrics inside join it."""
    @functools.wraps(fn)
    def wrapper(*args, progress: bool | None = None, **kwargs):
        from ..progress import call_bar
        with call_bar(progress, f"attrkit {fn.__name__}"):
            return fn(*args, progress=progress, **kwargs)
    return wrapper

