"""How a run gets its model: built once per worker from a factory, never shipped with each batch.

A factory is a zero-argument callable (e.g. ``functools.partial(SmallCNN, in_size=32)``), an importable
``"package.module:function"`` string, or the path of a model file (``attrkit.train.save``, a zoo
``.safetensors`` or TorchScript; read by :func:`attrkit.cli_io.load_model`).
An ``nn.Module`` instance is accepted too (used as is in-process; copied once to each Ray worker).
"""
from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path

import torch
from torch import nn


def import_object(spec: str):
    """``"package.module:attr.sub"`` -> the object (a clear ValueError when it cannot be found)."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"expected 'package.module:name', got {spec!r}")
    mod_name, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as err:
        raise ValueError(f"cannot import module {mod_name!r} (from {spec!r}): {err}") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {mod_name!r} has no attribute {attr!r} (from {spec!r})")
        obj = getattr(obj, part)
    return obj


class ModelFactory:
    """Picklable recipe for the model; :meth:`build` makes it (once per worker)."""

    def __init__(self, spec):
        if isinstance(spec, ModelFactory):
            spec = spec.spec
        if isinstance(spec, nn.Module):
            self.kind = "module"
        elif isinstance(spec, os.PathLike) or (isinstance(spec, str) and Path(spec).is_file()):
            self.kind, spec = "file", str(Path(spec).resolve())
        elif isinstance(spec, str):
            if ":" not in spec:
                raise ValueError(f"model {spec!r} is neither an existing model file nor a 'package.module:factory' "
                                 "string")
            self.kind = "import"
        elif callable(spec):
            self.kind = "callable"
        else:
            raise TypeError("model_factory must be a zero-argument callable, a 'package.module:factory' string, "
                            f"a saved model file path or an nn.Module; got {type(spec).__name__}")
        self.spec = spec

    def build(self):
        """The model, in eval mode when it is an ``nn.Module``."""
        if self.kind == "module":
            model = self.spec
        elif self.kind == "file":
            from ..cli_io import load_model         # attrkit.train.save, zoo safetensors or TorchScript files
            model = load_model(self.spec)
        else:
            fn = import_object(self.spec) if self.kind == "import" else self.spec
            if not callable(fn):
                raise TypeError(f"{self.spec!r} is not callable")
            if isinstance(fn, nn.Module):
                model = fn
            else:
                try:
                    model = fn()
                except TypeError as err:
                    raise TypeError(f"the model factory {self.name()} must be callable with no arguments "
                                    f"(use functools.partial to fix its arguments): {err}") from err
        if not callable(model):
            raise TypeError(f"the model factory {self.name()} returned {type(model).__name__}, not a model")
        if isinstance(model, nn.Module):
            model.eval()
        return model

    def name(self) -> str:
        if self.kind in ("file", "import"):
            return str(self.spec)
        fn = self.spec
        base = getattr(fn, "func", fn)           # functools.partial
        return f"{getattr(base, '__module__', '?')}.{getattr(base, '__qualname__', type(base).__name__)}"


def model_id(model, factory: ModelFactory) -> str:
    """Identity of a built model for the run's configuration hash: its class and a hash of its parameters and
    buffers (so a retrained model with the same factory is a different configuration)."""
    h = hashlib.blake2b(digest_size=12)
    if isinstance(model, nn.Module):
        cls = f"{type(model).__module__}.{type(model).__qualname__}"
        net = getattr(model, "_script", model)   # a TorchScript model behind attrkit.cli_io.ScriptedModel
        for name, t in net.state_dict().items():
            a = t.detach().to("cpu").contiguous()
            if a.dtype == torch.bfloat16:
                a = a.float()
            h.update(f"{name}{tuple(a.shape)}{a.dtype}".encode())
            h.update(a.numpy().tobytes())
    else:
        cls = factory.name()
    return f"{cls}@{h.hexdigest()}"
