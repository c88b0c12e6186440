"""The one input pipeline of the command line (``explain``, ``run``, ``evaluate``): models, images, channels.

A model spec is, in this order:

1. a zoo name (``shapes_cnn``; ``attrkit.zoo.names()``), unless a file of that name exists;
2. a file: written by ``attrkit.train.save`` (or a zoo ``.safetensors``), a TorchScript archive, or a whole
   module written by ``torch.save(model)`` -- the last only with ``trust=True`` (``--trust``), because
   unpickling it runs code from the file; a warning says so;
3. ``module:Factory`` or ``path/to/file.py:Factory`` -- a module, or a callable returning one; when the module
   is not importable but ``module.py`` (or a package) sits in the current folder, or a ``.py`` path is given,
   that folder is put on ``sys.path`` and a note on stderr says so. ``weights`` (``--weights``) loads a
   state-dict file into the result (``torch.load(weights_only=True)``, or safetensors).

Images are read by :func:`attrkit.readers.read_image` (as in :class:`attrkit.runs.ImageFolderSource`): Pillow, grey
or RGB, bilinear resize, scaled to [0, 1], then ``(x - mean) / std``. :func:`infer_channels` reads the number
of channels from the model's first convolution (also through TorchScript).
"""
from __future__ import annotations

import importlib
import importlib.util
import pickle
import sys
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from .readers import read_image  # noqa: F401  (the one image reader; kept importable from here)


class InputError(ValueError):
    """A model or data file could not be used (exit status 1 on the command line)."""
    exit_status = 1


class UsageError(InputError):
    """The command line itself is wrong: a malformed or unknown flag value (exit status 2)."""
    exit_status = 2


PICKLE_MAGIC = (b"\x80",)                # pickle protocol 2+ (the legacy torch.save format starts with one)
ZIP_MAGIC = b"PK\x03\x04"


def _note(text: str) -> None:
    print(f"attrkit: note: {text}", file=sys.stderr)


# ------------------------------------------------------------------------------------------ models
def load_model(spec, weights: str | None = None, trust: bool = False) -> nn.Module:
    """The model named by ``spec`` (see the module docstring), in eval mode."""
    if isinstance(spec, nn.Module):
        return spec.eval()
    spec = str(spec)
    path = Path(spec)
    if _is_factory_spec(spec, path):
        model = _from_factory(spec)
        if weights:
            load_weights(model, weights)
        return model.eval() if isinstance(model, nn.Module) else model
    if not path.exists() and _is_zoo_name(spec):
        if weights:
            raise UsageError(f"--weights goes with a 'module:Factory' model; the zoo model {spec} has its own")
        from . import zoo
        return zoo.pretrained(spec, progress=False).eval()
    if weights:
        raise UsageError("--weights goes with a 'module:Factory' model (a model file holds its own weights)")
    if not path.exists():
        hint = ""
        if ":" not in spec and "/" not in spec and "." not in spec:
            from . import zoo
            hint = f" (nor a zoo model: {', '.join(zoo.names())})"
        raise InputError(f"no such model file: {spec}{hint}")
    if path.is_dir():
        raise InputError(f"{spec} is a folder, not a model file")
    return _from_file(path, trust)


def _is_factory_spec(spec: str, path: Path) -> bool:
    if path.exists() or ":" not in spec:
        return False
    head = spec.rpartition(":")[0]
    return head.endswith(".py") or not spec.startswith((".", "/"))


def _is_zoo_name(spec: str) -> bool:
    try:
        from . import zoo
        return spec in zoo.names()
    except Exception:                   # noqa: BLE001 - no zoo, no zoo names
        return False


def _from_file(path: Path, trust: bool) -> nn.Module:
    from .train import load
    if path.suffix == ".safetensors":
        try:
            return load(path)
        except (ValueError, OSError) as err:
            raise InputError(str(err)) from None
    head = path.read_bytes()[:4] if path.stat().st_size else b""
    if head == ZIP_MAGIC and not zipfile.is_zipfile(path):
        raise InputError(f"{path} looks truncated or damaged (a torch/zip file whose end is missing); "
                         "save the model again")
    if not head.startswith(ZIP_MAGIC) and not head.startswith(PICKLE_MAGIC):
        raise InputError(f"{path} is not a model file (not a torch.save, attrkit.train.save, TorchScript or "
                         ".safetensors file)")
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)     # torch 2.9+: "torch.jit.load is deprecated"
                return ScriptedModel(torch.jit.load(str(path), map_location="cpu").eval())
        except Exception as err:    # noqa: BLE001 - any failure means "not readable"
            raise InputError(f"could not read {path} as a TorchScript model: {_line(err)}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        obj = _trusted(path, trust)
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise InputError(f"{path} looks truncated or damaged ({_line(err)}); save the model again") from None
    if isinstance(obj, nn.Module):
        return obj.eval()
    if isinstance(obj, dict) and "config" in obj and "state_dict" in obj:
        try:
            return load(path, trust=trust)
        except (ValueError, TypeError, KeyError) as err:
            raise InputError(_line(err)) from None
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in
                                             obj.get("state_dict", obj).values()):
        raise InputError(f"{path} holds only weights (a state dict); give the architecture too: "
                         f"--model module:Factory --weights {path}")
    raise InputError(f"{path} is not a model file (it holds a {type(obj).__name__}, not a module)")


def _trusted(path: Path, trust: bool):
    if not trust:
        raise InputError(f"{path} holds a whole pickled module (torch.save(model)); loading it runs code from the "
                         "file. If you trust the file, add --trust (Python: attrkit.cli_io.load_model(path, "
                         "trust=True)); safer: save a state dict and use --model module:Factory --weights FILE")
    warnings.warn(f"--trust: unpickling {path} runs any code it holds; use it only for files you made or trust",
                  UserWarning, stacklevel=3)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (AttributeError, ModuleNotFoundError) as err:
        raise InputError(f"{path} needs the code of its model class to load ({_line(err)}); make that module "
                         "importable (run from its folder or set PYTHONPATH)") from None
    except Exception as err:        # noqa: BLE001
        raise InputError(f"could not read {path}: {_line(err)}") from None


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


def _from_factory(spec: str):
    mod_name, _, attr = spec.rpartition(":")
    folder = None
    if mod_name.endswith(".py"):                                  # path/to/file.py:Factory
        file = Path(mod_name)
        if not file.is_file():
            raise InputError(f"--model {spec}: no such file {mod_name}")
        folder, mod_name = file.resolve().parent, file.stem
    elif importlib.util.find_spec(mod_name.split(".")[0]) is None:
        here = Path.cwd()
        first = mod_name.split(".")[0]
        if (here / f"{first}.py").is_file() or (here / first / "__init__.py").is_file():
            folder = here
    if folder is not None and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
        _note(f"added {folder} to the import path to import {mod_name!r} (as PYTHONPATH={folder} would)")
    from .runs.factory import import_object
    try:
        obj = import_object(f"{mod_name}:{attr}")
    except ValueError as err:
        hint = "" if folder is not None else \
            " (run attrkit from the folder that holds the module, give path/to/file.py:Factory, or set PYTHONPATH)"
        raise InputError(f"--model {spec}: {_line(err)}{hint}") from None
    model = obj if isinstance(obj, nn.Module) else obj() if callable(obj) else None
    if model is None or not callable(model):
        raise InputError(f"--model {spec} must name an nn.Module or a function returning one")
    return model


def load_weights(model, weights: str) -> None:
    """Load a state-dict file (torch.save'd tensors, ``{"state_dict": ...}`` or safetensors) into ``model``."""
    p = Path(weights)
    if not p.is_file():
        raise InputError(f"no such weights file: {weights}")
    try:
        if p.suffix == ".safetensors":
            from .models.files import load_safetensors
            state = load_safetensors(p)[0]
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:        # noqa: BLE001
        raise InputError(f"could not read weights from {weights}: {_line(err)}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise InputError(f"the weights in {weights} do not fit the model: {str(err).splitlines()[0]}") from None


def _line(err) -> str:
    return " ".join(str(err).split()) or type(err).__name__


# ------------------------------------------------------------------------------------------ model facts
def model_meta(model) -> dict:
    meta = dict(getattr(model, "meta", None) or {})
    cfg = getattr(model, "config", None)
    if isinstance(cfg, dict):
        meta.setdefault("config", cfg)
    return meta


def infer_channels(model) -> int | None:
    """Input channels of the model's first convolution (1 or 3), from its config, or None when unknown."""
    net = getattr(model, "_script", model)
    if isinstance(net, nn.Module):
        for m in net.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                return m.in_channels
        for _, p in net.named_parameters():                   # TorchScript: the first 4-D weight [out, in, kh, kw]
            if p.dim() == 4:
                return int(p.shape[1])
    cfg = model_meta(model).get("config") or {}
    c = cfg.get("in_channels") if isinstance(cfg, dict) else None
    return int(c) if c in (1, 3) else None


def in_features(model) -> int | None:
    """Inputs of the model's first layer with weights when that layer is a ``Linear`` (a tabular model), else
    None (convolutions, embeddings of token ids, or unknown)."""
    net = getattr(model, "_script", model)
    if not isinstance(net, nn.Module):
        return None
    for m in net.modules():
        own = dict(m.named_parameters(recurse=False))
        if not own:
            continue
        kind = getattr(m, "original_name", type(m).__name__)     # TorchScript keeps the class name here
        w = own.get("weight")
        return int(w.shape[1]) if kind == "Linear" and w is not None and w.dim() == 2 else None
    return None


# ------------------------------------------------------------------------------------------ images
def floats(text, what: str) -> list[float] | None:
    """``"0.5,0.5,0.5"`` -> ``[0.5, 0.5, 0.5]`` (also a list; None stays None)."""
    if text is None:
        return None
    if isinstance(text, (list, tuple)):
        return [float(v) for v in text]
    try:
        return [float(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise UsageError(f"--{what} must be comma-separated numbers, got {text!r}") from None


def size(text) -> tuple[int, int] | None:
    """``"64"`` / ``"48x64"`` / 64 / (48, 64) -> (height, width)."""
    if text is None:
        return None
    if isinstance(text, int):
        return text, text
    if isinstance(text, (list, tuple)):
        text = ",".join(str(int(v)) for v in text)
    parts = str(text).lower().replace("x", ",").split(",")
    try:
        nums = [int(p) for p in parts if p]
    except ValueError:
        raise UsageError(f"--size must be N or HxW, got {text!r}") from None
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2 or min(nums) < 1:
        raise UsageError(f"--size must be N or HxW with positive numbers, got {text!r}")
    return nums[0], nums[1]


def image_settings(model=None, size_=None, mean=None, std=None, channels=None):
    """(Pillow mode, (H, W) or None, mean, std) for reading images for ``model``: the flags when given, else
    the model's ``meta`` (``input_size``, ``mean``, ``std``) and its first convolution's channels (default RGB)."""
    meta = model_meta(model) if model is not None else {}
    cfg = meta.get("config", {}) if isinstance(meta.get("config"), dict) else {}
    if channels is None:
        channels = infer_channels(model) if model is not None else None
        channels = channels if channels in (1, 3) else 3
    elif channels not in (1, 3):
        raise UsageError(f"--channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    hw = size(size_) or size(meta.get("input_size") or cfg.get("in_size"))
    mean = floats(mean, "mean") if mean is not None else floats(meta.get("mean"), "mean")
    std = floats(std, "std") if std is not None else floats(meta.get("std"), "std")
    for vals, what in ((mean, "mean"), (std, "std")):
        if vals is not None and len(vals) not in (1, channels):
            raise UsageError(f"--{what} has {len(vals)} values for {channels}-channel images")
    if std is not None and any(v == 0 for v in std):
        raise UsageError("--std must not contain 0")
    return ("L" if channels == 1 else "RGB"), hw, mean, std


def check_forward(model, x, channels_given: bool = False) -> None:
    """One forward pass on the first sample; a failure becomes one sentence that names the input shape and,
    for images, suggests ``--channels`` / ``--size``."""
    first = x[:1] if isinstance(x, torch.Tensor) else None
    if first is None:
        return
    try:
        with torch.no_grad():
            model(first)
    except Exception as err:        # noqa: BLE001 - any failure of the user's model on our input
        hint = ""
        if first.dim() == 4:
            other = 1 if first.shape[1] == 3 else 3
            hint = f"; if the model takes {other}-channel images, give --channels {other}" + \
                   ("" if channels_given else " (the channels could not be read from the model)") + \
                   ", and --size if it needs another size"
        elif first.dim() == 2:
            hint = "; if the table holds a label or id column, name it with --target-column / --id-column"
        raise InputError(f"the model failed on the input of shape {tuple(first.shape)}: "
                         f"{_reason(err)[:300]}{hint}") from None


def _reason(err) -> str:
    """The informative line of an exception (TorchScript puts its own traceback before the reason)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    named = [ln for ln in lines if "Error:" in ln]
    return named[-1] if named else lines[0] if lines else type(err).__name__
