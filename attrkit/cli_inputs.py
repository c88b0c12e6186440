"""What the command line reads and writes: model specs, images, CSV rows, targets, options, figures.

Model specs: a file written by ``attrkit.train.save`` (architecture + weights, loaded without unpickling
code), a TorchScript archive, or ``package.module:factory`` (a callable returning the model; ``--weights``
loads a state-dict file into it). Images go through Pillow: grey or RGB, resized, scaled to [0, 1], then
``(x - mean) / std``; the defaults come from the model's ``meta`` when it has them.
"""
from __future__ import annotations

import ast
import csv
import importlib
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn


class InputError(ValueError):
    """Bad user input for the command line (reported in one line)."""


# ------------------------------------------------------------------------------------------ models
def load_model(spec: str, weights: str | None = None) -> nn.Module:
    """The model named by ``spec`` (see the module docstring), in eval mode."""
    path = Path(spec)
    if not path.exists() and ":" in spec and not spec.startswith((".", "/")):
        model = _from_factory(spec)
        if weights:
            _load_weights(model, weights)
        return model.eval() if isinstance(model, nn.Module) else model
    if weights:
        raise InputError("--weights goes with a 'package.module:factory' model (the file itself holds weights)")
    if not path.exists():
        raise InputError(f"no such model file: {spec}")
    if path.is_dir():
        raise InputError(f"{spec} is a folder, not a model file")
    if _is_torchscript(path):
        try:
            return ScriptedModel(torch.jit.load(str(path), map_location="cpu").eval())
        except Exception as err:    # noqa: BLE001 - any failure means "not readable"
            raise InputError(f"could not read {spec} as a TorchScript model: {err}") from None
    from .train import load
    try:
        return load(path)
    except ValueError as err:
        if "not an attrkit model file" in str(err) and _is_state_dict(path):
            raise InputError(f"{spec} holds only weights (a state dict); give the architecture too: "
                             f"--model package.module:factory --weights {spec}") from None
        raise InputError(str(err)) from None


class ScriptedModel(nn.Module):
    """A TorchScript model behind a plain module: gradients flow through it, but ScriptModules refuse the
    forward hooks that memory probes and layer taps use, so the script is kept out of ``modules()`` and its
    layers cannot be tapped (layer-level methods need the nn.Module)."""

    def __init__(self, script):
        super().__init__()
        object.__setattr__(self, "_script", script)

    def forward(self, x):
        return self._script(x)

    @property
    def meta(self) -> dict:
        return {}


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.endswith("constants.pkl") for n in z.namelist())


def _is_state_dict(path: Path) -> bool:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:               # noqa: BLE001
        return False
    return isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _from_factory(spec: str):
    from .runs.factory import import_object
    try:
        obj = import_object(spec)
    except ValueError as err:
        raise InputError(f"--model {spec}: {err}") from None
    model = obj if isinstance(obj, nn.Module) else obj() if callable(obj) else None
    if model is None or not callable(model):
        raise InputError(f"--model {spec} must name an nn.Module or a function returning one")
    return model


def _load_weights(model, weights: str) -> None:
    p = Path(weights)
    if not p.is_file():
        raise InputError(f"no such weights file: {weights}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:        # noqa: BLE001
        raise InputError(f"could not read weights from {weights}: {err}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise InputError(f"the weights in {weights} do not fit the model: {str(err).splitlines()[0]}") from None


def model_meta(model) -> dict:
    meta = dict(getattr(model, "meta", None) or {})
    cfg = getattr(model, "config", None)
    if isinstance(cfg, dict):
        meta.setdefault("config", cfg)
    return meta


def model_classes(model) -> list[str] | None:
    meta = model_meta(model)
    for key in ("classes", "class_names"):
        if meta.get(key):
            return [str(c) for c in meta[key]]
    return None


def _first_conv(model):
    if isinstance(model, nn.Module):
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Conv3d)):
                return m
    return None


# ------------------------------------------------------------------------------------------ inputs
def _floats(text, what: str) -> list[float] | None:
    if text is None:
        return None
    if isinstance(text, (list, tuple)):
        return [float(v) for v in text]
    try:
        return [float(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(f"--{what} must be comma-separated numbers, got {text!r}") from None


def _size(text) -> tuple[int, int] | None:
    if text is None:
        return None
    if isinstance(text, int):
        return text, text
    parts = str(text).lower().replace("x", ",").split(",")
    try:
        nums = [int(p) for p in parts if p]
    except ValueError:
        raise InputError(f"--size must be N or HxW, got {text!r}") from None
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2 or min(nums) < 1:
        raise InputError(f"--size must be N or HxW with positive numbers, got {text!r}")
    return nums[0], nums[1]


def read_images(paths, model=None, size=None, mean=None, std=None, channels=None) -> torch.Tensor:
    """``[N, C, H, W]`` float tensor from image files (see the module docstring for the steps)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:             # pragma: no cover
        raise InputError("reading images needs Pillow: pip install pillow") from None
    meta = model_meta(model) if model is not None else {}
    cfg = meta.get("config", {}) if isinstance(meta.get("config"), dict) else {}
    conv = _first_conv(model)
    if channels is None:
        channels = conv.in_channels if conv is not None and conv.in_channels in (1, 3) else \
            cfg.get("in_channels", 3) if cfg.get("in_channels") in (1, 3) else 3
    hw = _size(size) or _size(meta.get("input_size") or cfg.get("in_size"))
    mean = _floats(mean, "mean") if mean is not None else _floats(meta.get("mean"), "mean")
    std = _floats(std, "std") if std is not None else _floats(meta.get("std"), "std")
    arrays = []
    for p in paths:
        p = Path(p)
        try:
            with Image.open(p) as im:
                im.load()
                im = im.convert("L" if channels == 1 else "RGB")
                if hw is not None and im.size != (hw[1], hw[0]):
                    im = im.resize((hw[1], hw[0]), Image.BILINEAR)
                a = np.asarray(im, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise InputError(f"cannot read {p} as an image (PNG or JPEG expected): {err}") from None
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise InputError(f"the images have different sizes {sorted(s[1:] for s in shapes)}; give --size")
    x = torch.from_numpy(np.stack(arrays))
    for vals, what in ((mean, "mean"), (std, "std")):
        if vals is not None and len(vals) not in (1, x.shape[1]):
            raise InputError(f"--{what} has {len(vals)} values for {x.shape[1]}-channel images")
    if mean is not None:
        x = x - torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    if std is not None:
        s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
        if bool((s == 0).any()):
            raise InputError("--std must not contain 0")
        x = x / s
    return x


def read_csv(path, model=None) -> tuple[torch.Tensor, list[str], list[str] | None]:
    """(rows ``[N, F]``, row names, feature names). A header row is used when the first row is not numeric;
    when the model knows its feature names, the CSV's columns are picked and ordered by them."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a text CSV file") from None
    dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    rows = [r for r in csv.reader(text.splitlines(), dialect) if any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{path} has no rows")
    header = None
    if not _numeric(rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    if not rows:
        raise InputError(f"{path} has a header but no data rows")
    known = (model_meta(model).get("feature_names") if model is not None else None)
    if header and known:
        missing = [f for f in known if f not in header]
        if missing:
            raise InputError(f"{path} lacks the model's feature column(s) {missing[:5]}")
        idx = [header.index(f) for f in known]
        names = list(known)
    else:
        idx = list(range(len(rows[0])))
        names = header
    data = []
    for k, r in enumerate(rows):
        if len(r) != len(rows[0]):
            raise InputError(f"{path} row {k + 1} has {len(r)} values, the first has {len(rows[0])}")
        try:
            data.append([float(r[i]) for i in idx])
        except ValueError:
            raise InputError(f"{path} row {k + 1} holds a value that is not a number") from None
    x = torch.tensor(data, dtype=torch.float32)
    return x, [f"row {k + 1}" for k in range(len(data))], names


def _numeric(row) -> bool:
    try:
        [float(c) for c in row]
        return True
    except ValueError:
        return False


def parse_target(text, classes):
    """None / "pred" -> predicted class; an integer; or a class name (needs the model's class names)."""
    if text is None or str(text).lower() in ("pred", "predicted"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    if classes and text in classes:
        return classes.index(text)
    known = f"; the model's classes are {', '.join(classes)}" if classes else \
        " (the model has no class names; give an index)"
    raise InputError(f"unknown target {text!r}{known}")


WORDS = {"true": True, "false": False, "none": None}
PLAYER_KINDS = ("grid", "superpixels", "slic", "quickshift", "felzenszwalb")


def parse_options(items) -> dict:
    """``["steps=64", "baseline=blur", "local=false"]`` -> ``{"steps": 64, "baseline": "blur", "local": False}``
    (Python literals, true/false/none in any case, or text)."""
    out = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--option wants KEY=VALUE, got {item!r}")
        if val.strip().lower() in WORDS:
            out[key.strip()] = WORDS[val.strip().lower()]
            continue
        try:
            out[key.strip()] = ast.literal_eval(val)
        except (ValueError, SyntaxError):
            out[key.strip()] = val
    return out


def resolve_players(options: dict, x, layer) -> dict:
    """``players=grid:4`` or ``players=superpixels:50`` (also ``slic:``, ``quickshift:``, ``felzenszwalb:``)
    -> the label tensor for the inputs ``x``; anything else is left to the method."""
    spec = options.get("players")
    if not isinstance(spec, str) or layer is not None:
        return options
    kind, sep, num = spec.partition(":")
    if not sep or kind not in PLAYER_KINDS:
        raise InputError(f"players={spec!r}: at the input give grid:K (K x K cells) or superpixels:N "
                         "(also slic:N, quickshift:N, felzenszwalb:N); 'cells'/'channels' need --layer")
    try:
        n = int(num)
    except ValueError:
        raise InputError(f"players={spec!r}: {num!r} is not a whole number") from None
    from .games.players import grid, superpixels
    if kind == "grid":
        labels = grid(x, n)
    else:
        algorithm = "slic" if kind == "superpixels" else kind
        labels = superpixels(x, n=n, algorithm=algorithm)
    return {**options, "players": labels}


# ------------------------------------------------------------------------------------------ outputs
def read_npz(path: Path):
    """Inputs from a ``.npz``: one array is one batch; several arrays are several inputs — passed by keyword
    when named (``np.savez(f, input_ids=..., pixel_values=...)``), positionally in file order when saved
    unnamed (``np.savez(f, img, tab)``: ``arr_0``, ``arr_1``, ...). Integer arrays stay integers."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: torch.from_numpy(np.array(z[k])) for k in z.files}
    except Exception as err:  # noqa: BLE001 - any failure means "not readable"
        raise InputError(f"could not read {path} as a .npz file: {err}") from None
    if not arrays:
        raise InputError(f"{path} holds no arrays")
    for k, v in arrays.items():
        if v.dim() == 0:
            raise InputError(f"{path}: array {k!r} is a scalar; every input needs a leading sample dimension")
    arrays = {k: v.float() if v.dtype == torch.float64 else v for k, v in arrays.items()}
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    if all(k == f"arr_{i}" for i, k in enumerate(arrays)):
        return tuple(arrays.values())
    return arrays


def write_figures(a, out: Path, names, method: str, classes, feature_names, mode: str, limit: int = 20) -> list:
    """One PNG per sample (the first ``limit``): heatmap for images, bars for rows; per input for several."""
    from .viz import plot
    if a.input_names:
        return [p for k in a.input_names
                for p in write_figures(a.part(k), out, [f"{n}_input{k}" for n in names], method, classes, None,
                                       mode, limit)]
    paths = []
    for i, name in enumerate(names[:limit]):
        p = out / f"{_slug(name)}_{method}.png"
        fig = plot(a, i, mode=mode, class_names=classes, feature_names=feature_names, path=p)
        del fig
        paths.append(p)
    return paths


def _slug(s: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in s)
    return keep[:80] or "input"


# ------------------------------------------------------------------------------------------ training
DATASETS = ("digits", "shapes", "faces", "breast_cancer", "diabetes", "synthetic_tabular")


def train_zoo(name: str, force: bool = False, quiet: bool = False) -> dict:
    try:
        zoo = importlib.import_module("attrkit.zoo")
    except ImportError as err:
        raise InputError(f"attrkit.zoo is not available ({err})") from None
    kwargs = {"progress": not quiet}
    if force:
        kwargs["retrain"] = True
    try:
        model = zoo.pretrained(name, **kwargs)
    except TypeError:
        kwargs.pop("retrain", None)
        model = zoo.pretrained(name, **kwargs)
    meta = model_meta(model)
    if not quiet:
        print(f"zoo model {name}: ready" + "".join(f", {k} {v:.3f}" for k, v in meta.items()
                                                    if k in ("accuracy", "test_accuracy", "r2")
                                                    and isinstance(v, float)))
    return {"zoo": name, "meta": {k: v for k, v in meta.items() if isinstance(v, (int, float, str, list))}}


def train_model(data: str, arch: str | None, epochs: int, lr: float, batch_size: int, test_fraction: float,
                seed: int, out: str, quiet: bool) -> dict:
    from . import data as datasets
    from .models import MLP, LogisticModel, SmallCNN
    from .train import evaluate, fit, save
    if data not in DATASETS:
        raise InputError(f"unknown data set {data!r}; choose from {', '.join(DATASETS)}")
    if epochs < 1:
        raise InputError("--epochs must be >= 1")
    fn = getattr(datasets, data)
    ds = fn(progress=not quiet) if data == "shapes" else fn()
    train, test = ds.split(test_fraction, seed=seed)
    image = ds.x.dim() == 4
    n_out = len(ds.classes) if ds.classes else 1
    arch = arch or ("small_cnn" if image else "mlp")
    if arch == "small_cnn":
        if not image:
            raise InputError("small_cnn needs image data; use --model mlp for tables")
        model = SmallCNN(in_channels=ds.x.shape[1], num_classes=n_out, in_size=ds.x.shape[-1], seed=seed)
    elif arch == "mlp":
        model = MLP(int(np.prod(ds.x.shape[1:])), out=n_out, seed=seed) if not image else None
        if model is None:
            raise InputError("mlp takes tables; use --model small_cnn for images")
    elif arch == "logistic":
        if image or n_out != 2:
            raise InputError("logistic takes a table with two classes (e.g. breast_cancer)")
        model = LogisticModel(ds.x.shape[1], seed=seed)
    else:
        raise InputError(f"unknown model {arch!r}; choose small_cnn, mlp or logistic")
    fit(model, train, test, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, progress=not quiet)
    scores = evaluate(model, test)
    meta = {"data": data, "classes": ds.classes, "feature_names": ds.feature_names,
            "input_shape": list(ds.x.shape[1:]), "held_out": scores}
    path = save(model, out, meta=meta)
    return {"model": arch, "data": data, "path": str(path), "held_out": scores, "epochs": epochs}
