"""Models and layers: eval mode for a call, layer look-up, and hooks that are always removed."""
from __future__ import annotations

import contextlib
import difflib
import warnings
from typing import Callable, Iterator

import torch
from torch import nn


def model_device_dtype(model) -> tuple[torch.device | None, torch.dtype | None]:
    """Device and floating dtype of the model's first parameter or buffer (None for plain callables)."""
    if isinstance(model, nn.Module):
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                return t.device, t.dtype
        for t in model.parameters():
            return t.device, None
    return None, None


def inputs_for(model, x) -> torch.Tensor:
    """Validate the model and the batch ``x``; return ``x`` on the model's device and dtype."""
    from .checks import as_batch
    if not callable(model):
        raise TypeError(f"model must be a torch.nn.Module or a callable, got {type(model).__name__}")
    x = as_batch(x, "x")
    device, dtype = model_device_dtype(model)
    if device is not None:   # integer inputs (token ids, category codes) keep their dtype: never cast
        x = x.to(device=device, dtype=(dtype or x.dtype) if x.is_floating_point() else x.dtype)
    return x


@contextlib.contextmanager
def eval_mode(model, warn: bool = True) -> Iterator[None]:
    """Put ``model`` (and every submodule) in eval mode for the block; restore each module's flag after."""
    if not isinstance(model, nn.Module):
        yield
        return
    flags = {m: m.training for m in model.modules()}
    mode_dependent = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)
    if warn and any(m.training and isinstance(m, mode_dependent) for m in model.modules()):
        warnings.warn("the model was in train mode (dropout/batch-norm statistics would make attributions "
                      "random); attrkit puts it in eval mode for this call and restores it afterwards",
                      stacklevel=4)
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags.items():
            m.training = flag


def is_scripted(model) -> bool:
    """True for a TorchScript module (``torch.jit.script``/``trace``/``load``): it takes no Python hooks.
    An adapter around one (several inputs, structured outputs) counts as one."""
    if type(model).__name__ == "ModelAdapter":
        model = getattr(model, "model", model)
    return isinstance(model, torch.jit.ScriptModule)


def require_hooks(model, what: str) -> None:
    """Refuse, with the way out, a TorchScript model for a feature that needs forward/backward hooks."""
    if is_scripted(model):
        raise TypeError(f"{what} needs hooks on the model's layers, which TorchScript modules do not support; "
                        "pass the eager torch.nn.Module (e.g. load the weights into the Python class, or use the "
                        "CLI's module:factory spec). Input-level gradient and perturbation methods work on "
                        "TorchScript models as they are")


def resolve_layer(model, layer) -> tuple[str, nn.Module]:
    """Return ``(name, module)`` for a layer given by name (from ``named_modules()``) or as a module."""
    if not isinstance(model, nn.Module):
        raise TypeError("layer= needs the model to be a torch.nn.Module so its layers can be found")
    require_hooks(model, "layer=")
    named = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, mod in named.items():
            if mod is layer:
                return name, mod
        raise ValueError("the layer module given is not a submodule of the model")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (str) or a module, got {type(layer).__name__}")
    if layer in named and layer != "":
        return layer, named[layer]
    if f"model.{layer}" in named and type(model).__name__ == "ModelAdapter":   # a user's name, on the adapter
        return layer, named[f"model.{layer}"]
    names = [n for n in named if n]
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else \
        f"; the model's layers are: {', '.join(names[:30])}{' ...' if len(names) > 30 else ''}"
    raise ValueError(f"the model has no layer named {layer!r}{hint}")


class LayerTap:
    """A forward hook on one layer that either captures its output or replaces it.

    ``tap.replace_with = t`` makes the layer return ``t`` (same shape as its output); otherwise the output
    is kept in ``tap.output``. The hook is removed on exit, also when the block raised.
    A layer called more than once per forward pass is refused: its activation would be ambiguous. A layer that
    returns a tuple (attention modules: ``(output, weights)``) is tapped at its first element.

    The rest of the model receives a copy of the layer's output: an in-place operation after the layer
    (``nn.ReLU(inplace=True)``, ``out += identity``, torchvision's pattern) then changes the copy, not the
    captured activation, and gradients taken at ``tap.output`` (or at a replacement leaf) are those of the
    layer's output, as in the same model with out-of-place operations.
    """

    def __init__(self, module: nn.Module, name: str = "layer"):
        self.module, self.name = module, name
        self.output: torch.Tensor | None = None
        self.replace_with: torch.Tensor | None = None
        self.calls = 0
        self._handle = None

    def _hook(self, module, args, out):
        self.calls += 1
        if self.calls > 1:
            raise ValueError(f"layer {self.name!r} is called more than once in one forward pass; "
                             "attributions at a reused module are ambiguous — give each use its own module")
        rest = None
        if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            out, rest = out[0], out        # attention modules: (output, attention weights, ...) -> the output
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"layer {self.name!r} returns {type(out).__name__}, not a tensor; choose a layer "
                            "whose output is a single tensor (or a tuple whose first element is one)")
        if self.replace_with is not None:
            if self.replace_with.shape != out.shape:
                raise ValueError(f"replacement for layer {self.name!r} has shape {tuple(self.replace_with.shape)}, "
                                 f"the layer produces {tuple(out.shape)}")
            out = self.replace_with
        self.output = out
        if rest is not None:          # the tuple's other elements pass through unchanged
            return type(rest)([out.clone(), *rest[1:]]) if isinstance(rest, list) else (out.clone(),) + tuple(rest[1:])
        return out.clone()      # in-place ops downstream must not touch the tapped tensor

    def reset(self) -> None:
        self.calls, self.output = 0, None

    def __enter__(self) -> "LayerTap":
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.output = None
        self.replace_with = None


def count_hooks(model: nn.Module) -> int:
    """Number of hooks registered on the model's modules (used by tests to prove hooks are removed)."""
    total = 0
    for m in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            total += len(getattr(m, attr, {}) or {})
    total += len(getattr(nn.modules.module, "_global_forward_hooks", {}))
    total += len(getattr(nn.modules.module, "_global_backward_hooks", {}))
    return total


def call_model(model: Callable, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if isinstance(out, (tuple, list)):
        raise TypeError("the model returns a tuple/list; say which output to explain with target=(index, class), "
                        "e.g. target=(0, 3), or a callable target on the raw output")
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model must return a torch.Tensor, got {type(out).__name__}")
    if out.dim() == 0 or out.shape[0] != x.shape[0]:
        raise ValueError(f"the model returned shape {tuple(out.shape)} for a batch of {x.shape[0]}; it must map "
                         "a batch [N, ...] to [N, outputs] or [N]")
    return out


COMPILED_NOTE = ("the model is a torch.compile wrapper: attrkit explained its original module (model._orig_mod), "
                 "which computes the same function eagerly; layer hooks, modified backward rules and the many "
                 "batch shapes of an explanation do not run through a compiled graph")


def unwrap_compiled(model) -> tuple:
    """``(model._orig_mod, note)`` for a ``torch.compile``d module (``OptimizedModule``), else ``(model, None)``.

    Attribution needs forward hooks on layers, backward hooks for propagation rules and calls with many batch
    shapes; a compiled graph ignores hooks registered after compilation (``'NoneType' object has no attribute
    'detach'``), rejects rule hooks (dynamo ``AssertionError``) and recompiles per shape, so attrkit runs the
    original module, which computes the same function."""
    note = None
    while isinstance(model, nn.Module) and type(model).__name__ == "OptimizedModule" \
            and isinstance(getattr(model, "_orig_mod", None), nn.Module):
        model, note = model._orig_mod, COMPILED_NOTE
    return model, note


def strip_compiled_prefix(layer):
    """A layer name taken from the compiled wrapper's ``named_modules()`` (``_orig_mod.features.3``) as a name
    of the original module."""
    while isinstance(layer, str) and layer.startswith("_orig_mod."):
        layer = layer[len("_orig_mod."):]
    return layer
