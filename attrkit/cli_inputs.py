"""What the command line reads and writes: model specs, images, CSV rows, targets, options, figures.

Models and the image reader come from :mod:`attrkit.cli_io` (the pipeline ``explain``, ``run`` and
``evaluate`` share). Images: grey or RGB (default: what the model's first convolution takes), resized, scaled
to [0, 1], then ``(x - mean) / std``; the defaults come from the model's ``meta`` when it has them.
"""
from __future__ import annotations

import ast
import csv
import importlib
from pathlib import Path

import numpy as np
import torch
from torch import nn


# models: the shared pipeline of attrkit.cli_io (kept importable from here)
from .cli_io import (InputError, ScriptedModel, UsageError, check_forward, image_settings,  # noqa: E402,F401
                     in_features, infer_channels, load_model, load_weights, model_meta, read_image)
from .readers import read_npz  # noqa: E402,F401  (files -> inputs: the reader attrkit.runs shares)


def method_spec(name: str):
    """The registry entry of ``--method`` (an unknown name is a usage error, exit 2)."""
    from .registry import get
    try:
        return get(name)
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None


def check_layer(model, layer) -> None:
    """``--layer`` must name a module of the model (a usage error otherwise)."""
    if layer is None or not isinstance(model, nn.Module):
        return
    names = [n for n, _ in model.named_modules() if n]
    if layer not in names:
        import difflib
        close = difflib.get_close_matches(layer, names, n=3)
        raise UsageError(f"--layer {layer!r}: no layer named so in the model"
                         + (f"; did you mean {', '.join(close)}?" if close else "")
                         + f" (layers: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''})")


def read_inputs(paths, model, args):
    """(x, sample names, feature names or None, labels or None) from ``--input`` files: image files, one CSV
    (``--target-column`` / ``--id-column``) or one .npz."""
    for p in paths:
        if not p.exists():
            raise InputError(f"no such input file: {p}")
        if p.is_dir():
            raise InputError(f"{p} is a folder; give image files or one CSV file (use `attrkit run` for folders)")
    suffixes = {p.suffix.lower() for p in paths}
    if len(paths) == 1 and paths[0].suffix.lower() == ".npz":       # arrays; several arrays = several inputs
        x = read_npz(paths[0])
        first = x if isinstance(x, torch.Tensor) else next(iter(x.values())) if isinstance(x, dict) else x[0]
        return x, [f"{paths[0].stem}_{i}" for i in range(first.shape[0])], None, None
    if len(paths) == 1 and paths[0].suffix.lower() in (".csv", ".tsv", ".txt"):
        x, names, feature_names, labels = read_csv(paths[0], model, getattr(args, "target_column", None),
                                                   getattr(args, "id_column", None))
        want = in_features(model)
        if want is not None and x.shape[1] != want:
            extra = "; name a label or id column with --target-column / --id-column" if x.shape[1] > want else ""
            raise InputError(f"{paths[0]} has {x.shape[1]} feature columns but the model takes {want}{extra}")
        return x, names, feature_names, labels
    if suffixes & {".csv", ".tsv", ".npz"}:
        raise UsageError("give one CSV file, one .npz file (several arrays in it = several model inputs) or "
                         "image files, not a mix")
    x = read_images(paths, model, size=args.size, mean=args.mean, std=args.std, channels=args.channels)
    return x, unique_stems(paths), None, None


def unique_stems(paths) -> list[str]:
    """File-name-safe names, one per path, distinct even when stems collide (``d1/cat.png``, ``d2/cat.png`` ->
    ``d1_cat``, ``d2_cat``; ``a b.png``, ``a_b.png`` -> ``a_b``, ``a_b-2``)."""
    paths = [Path(p) for p in paths]
    raw = [p.stem for p in paths]                 # the same file name in two folders: add the folder's name
    stems = [_slug(f"{p.parent.name}_{p.stem}") if raw.count(p.stem) > 1 and p.parent.name else _slug(p.stem)
             for p in paths]
    return _dedupe(stems)


def _dedupe(stems) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for s in stems:
        k = seen.get(s.lower(), 0) + 1
        seen[s.lower()] = k
        out.append(s if k == 1 else f"{s}-{k}")
    return out


def model_classes(model) -> list[str] | None:
    meta = model_meta(model)
    for key in ("classes", "class_names"):
        if meta.get(key):
            return [str(c) for c in meta[key]]
    return None


# ------------------------------------------------------------------------------------------ inputs
def read_images(paths, model=None, size=None, mean=None, std=None, channels=None) -> torch.Tensor:
    """``[N, C, H, W]`` float tensor from image files (see the module docstring for the steps)."""
    try:
        from PIL import UnidentifiedImageError
    except ImportError:             # pragma: no cover
        raise InputError("reading images needs Pillow: pip install pillow") from None
    mode, hw, mean, std = image_settings(model, size, mean, std, channels)
    arrays = []
    for p in paths:
        p = Path(p)
        try:
            arrays.append(read_image(p, mode, hw, mean, std))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise InputError(f"cannot read {p} as an image (PNG or JPEG expected): {err}") from None
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise InputError(f"the images have different sizes {sorted(s[1:] for s in shapes)}; give --size")
    return torch.from_numpy(np.stack(arrays))


def read_csv(path, model=None, target_column: str | None = None, id_column: str | None = None):
    """(rows ``[N, F]``, row names, feature names, labels or None). A header row is used when the first row is
    not numeric; when the model knows its feature names, the CSV's columns are picked and ordered by them.
    ``target_column`` (labels) and ``id_column`` (row names) are taken out of the features."""
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
    special = {}
    for flag, col in (("target-column", target_column), ("id-column", id_column)):
        if col is None:
            continue
        if header is None:
            raise UsageError(f"--{flag} {col!r} needs a header row in {path}")
        if col not in header:
            raise UsageError(f"--{flag} {col!r} is not a column of {path}; its columns are {header}")
        special[flag] = header.index(col)
    if header and known:
        missing = [f for f in known if f not in header]
        if missing:
            raise InputError(f"{path} lacks the model's feature column(s) {missing[:5]}")
        idx = [header.index(f) for f in known]
        names = list(known)
    else:
        idx = [i for i in range(len(rows[0])) if i not in special.values()]
        names = [header[i] for i in idx] if header else None
    data, labels = [], []
    for k, r in enumerate(rows):
        if len(r) != len(rows[0]):
            raise InputError(f"{path} row {k + 1} has {len(r)} values, the first has {len(rows[0])}")
        try:
            data.append([float(r[i]) for i in idx])
        except ValueError:
            raise InputError(f"{path} row {k + 1} holds a value that is not a number") from None
        if "target-column" in special:
            labels.append(r[special["target-column"]].strip())
    x = torch.tensor(data, dtype=torch.float32)
    rows_named = [r[special["id-column"]].strip() for r in rows] if "id-column" in special else \
        [f"row {k + 1}" for k in range(len(data))]
    return x, rows_named, names, (labels if "target-column" in special else None)


def label_targets(labels, classes) -> list[int]:
    """A label column's values (class indices or class names) -> class indices."""
    out = []
    for v in labels:
        try:
            out.append(int(float(v)))
        except ValueError:
            if not classes or v not in classes:
                raise InputError(f"label {v!r} is neither a class index nor one of the model's class names "
                                 f"{classes or '(none)'}") from None
            out.append(classes.index(v))
    return out


def _numeric(row) -> bool:
    try:
        [float(c) for c in row]
        return True
    except ValueError:
        return False


def parse_target(text, classes, labels=None):
    """None / "pred" -> predicted class; an integer; a class name (needs the model's class names); "label" ->
    the ``--target-column`` values."""
    if text is None or str(text).lower() in ("pred", "predicted"):
        return None
    if str(text).lower() == "label":
        if labels is None:
            raise UsageError("--target label needs the labels: name their column with --target-column")
        return label_targets(labels, classes)
    try:
        return int(text)
    except ValueError:
        pass
    if classes and text in classes:
        return classes.index(text)
    known = f"; the model's classes are {', '.join(classes)}" if classes else \
        " (the model has no class names; give an index)"
    raise UsageError(f"unknown target {text!r}{known}")


WORDS = {"true": True, "false": False, "none": None}
PLAYER_KINDS = ("grid", "superpixels", "slic", "quickshift", "felzenszwalb")


def parse_options(items) -> dict:
    """``["steps=64", "baseline=blur", "local=false"]`` -> ``{"steps": 64, "baseline": "blur", "local": False}``
    (Python literals, true/false/none in any case, or text)."""
    out = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option wants KEY=VALUE, got {item!r}")
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
        raise UsageError(f"players={spec!r}: at the input give grid:K (K x K cells) or superpixels:N "
                         "(also slic:N, quickshift:N, felzenszwalb:N); 'cells'/'channels' need --layer")
    try:
        n = int(num)
    except ValueError:
        raise UsageError(f"players={spec!r}: {num!r} is not a whole number") from None
    from .games.players import grid, superpixels
    if kind == "grid":
        labels = grid(x, n)
    else:
        algorithm = "slic" if kind == "superpixels" else kind
        labels = superpixels(x, n=n, algorithm=algorithm)
    return {**options, "players": labels}


# ------------------------------------------------------------------------------------------ outputs
def write_figures(a, out: Path, names, method: str, classes, feature_names, mode: str, limit: int = 20) -> list:
    """One PNG per sample (the first ``limit``): heatmap for images, bars for rows; per input for several."""
    from .viz import plot
    if a.input_names:
        return [p for k in a.input_names
                for p in write_figures(a.part(k), out, [f"{n}_input{k}" for n in names], method, classes, None,
                                       mode, limit)]
    paths = []
    for i, name in enumerate(_dedupe([_slug(n) for n in names[:limit]])):
        p = out / f"{name}_{method}.png"
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
