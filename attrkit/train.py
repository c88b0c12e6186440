"""The lecture's training loop (AdamW, shuffled DataLoader, tqdm) and safe model files.

`fit` adds validation per epoch and early stopping on the validation loss (best weights
restored). `save`/`load` write ``{"config", "state_dict", "meta"}`` with ``torch.save`` and read it
with ``torch.load(weights_only=True)``: a file that needs arbitrary unpickling is refused.
"""

from __future__ import annotations

import copy
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn, optim
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset
from tqdm.auto import tqdm

from .core.files import atomic_write
from .data.dataset import Dataset
from .models import build

__all__ = ["fit", "History", "evaluate", "predict", "save", "load", "pick_device",
           "outputs_probabilities"]

LOSSES = ("cross_entropy", "bce", "mse")


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: cuda if available, else mps, else cpu (the lecture's order)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'mps'.") from err


@dataclass
class History:
    """What `fit` did, one entry per epoch run."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int | None = None        # 1-based epoch whose weights were kept
    stopped_early: bool = False
    seconds: float = 0.0
    loss: str = ""

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def as_dict(self) -> dict[str, Any]:
        return {"train_loss": list(self.train_loss), "val_loss": list(self.val_loss),
                "val_accuracy": list(self.val_accuracy), "best_epoch": self.best_epoch,
                "stopped_early": self.stopped_early, "seconds": self.seconds, "loss": self.loss}


# ------------------------------------------------------------------------------- inputs
def _parts(x: torch.Tensor | tuple) -> tuple[torch.Tensor, ...]:
    """The model's inputs as a tuple: ``(x,)`` for one tensor, the tuple itself for several."""
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _as_tensors(data: Any, what: str) -> tuple[torch.Tensor | tuple, torch.Tensor, bool | None]:
    """(x, y, is_classification or None when unknown); x is a tuple for models with several inputs."""
    if isinstance(data, Dataset):
        return data.x, data.y, data.is_classification
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{what}: x has {x.shape[0]} rows but y has {y.shape[0]}.")
        return x, y, None
    raise TypeError(f"{what} must be an attrkit Dataset or a tuple (x, y) of tensors, "
                    f"got {type(data).__name__}.")


def outputs_probabilities(model: nn.Module) -> bool:
    """True when the model's last module is a Sigmoid or Softmax (outputs are probabilities,
    as in the lecture's LogisticModel and SimpleMLP), False when it outputs logits / values."""
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    return bool(leaves) and isinstance(leaves[-1], (nn.Sigmoid, nn.Softmax))


def _predicted_class(out: torch.Tensor, probabilities: bool) -> torch.Tensor:
    if out.ndim > 1 and out.shape[-1] > 1:
        return out.argmax(-1)
    return (out.reshape(-1) > (0.5 if probabilities else 0.0)).long()


def _loss_fn(loss: str | Callable | None, y: torch.Tensor, classification: bool | None,
             n_out: int, probabilities: bool = False) -> tuple[str, Callable]:
    """(name, criterion); "cross_entropy" / "bce" take logits, or probabilities when the model
    ends in a Sigmoid / Softmax (then NLL of log p / BCELoss are used)."""
    if callable(loss) and not isinstance(loss, str):
        return getattr(loss, "__name__", type(loss).__name__), loss
    if loss is None:
        cls = classification if classification is not None else not torch.is_floating_point(y)
        loss = ("cross_entropy" if n_out > 1 else "bce") if cls else "mse"
    if loss == "cross_entropy":
        if probabilities:
            nll = nn.NLLLoss()
            return loss, lambda out, t: nll(torch.log(out.clamp_min(1e-12)), t)
        return loss, nn.CrossEntropyLoss()
    if loss == "bce":
        base = nn.BCELoss() if probabilities else nn.BCEWithLogitsLoss()
        return loss, lambda out, t: base(out.reshape(-1), t.reshape(-1).to(out.dtype))
    if loss == "mse":
        base = nn.MSELoss()
        return loss, lambda out, t: base(out.reshape(out.shape[0], -1),
                                         t.reshape(t.shape[0], -1).to(out.dtype))
    raise ValueError(f"unknown loss {loss!r}; use one of {LOSSES} or a callable(output, target).")


def _loader(x: torch.Tensor | tuple, y: torch.Tensor, batch_size: int, shuffle: bool,
            generator: torch.Generator | None) -> DataLoader:
    """A DataLoader of ``[*inputs, y]`` index batches (fast on in-memory tensors)."""
    ds = TensorDataset(*_parts(x), y)
    base = RandomSampler(ds, generator=generator) if shuffle else SequentialSampler(ds)
    return DataLoader(ds, sampler=BatchSampler(base, batch_size, drop_last=False), batch_size=None)


def _output_count(model: nn.Module, x: torch.Tensor | tuple, device: torch.device) -> int:
    with torch.no_grad():
        out = model(*(t[:1].to(device) for t in _parts(x)))
    return 1 if out.ndim == 1 else int(out.shape[-1])


# --------------------------------------------------------------------------- evaluation
def predict(model: nn.Module, x: torch.Tensor | tuple, batch_size: int = 256) -> torch.Tensor:
    """Model outputs for `x` (a tensor, or a tuple for ``model(*x)``) in eval mode, batched, on the
    model's device; returned on the CPU."""
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    was_training = model.training
    model.eval()
    outs, parts = [], _parts(x)
    with torch.no_grad():
        for s in range(0, parts[0].shape[0], batch_size):
            outs.append(model(*(t[s:s + batch_size].to(device) for t in parts)).cpu())
    model.train(was_training)
    return torch.cat(outs)


def evaluate(model: nn.Module, data: Dataset | tuple, batch_size: int = 256) -> dict[str, float]:
    """Held-out figures: ``accuracy`` (classification) or ``r2`` and ``mse`` (regression)."""
    x, y, cls = _as_tensors(data, "data")
    out = predict(model, x, batch_size)
    if cls is None:
        cls = not torch.is_floating_point(y)
    if cls:
        pred = _predicted_class(out, outputs_probabilities(model))
        return {"accuracy": float((pred == y.reshape(-1)).float().mean())}
    out = out.reshape(y.shape).float()
    mse = float(((out - y) ** 2).mean())
    var = float(((y - y.mean()) ** 2).mean())
    return {"r2": 1.0 - mse / var if var > 0 else float("nan"), "mse": mse}


def _validate(model, loader, criterion, device, classification: bool) -> tuple[float, float]:
    probabilities = outputs_probabilities(model)
    model.eval()
    tot_obs, tot_loss, correct = 0, 0.0, 0
    with torch.no_grad():
        for *x, y in loader:
            x, y = [t.to(device) for t in x], y.to(device)
            out = model(*x)
            tot_loss += float(criterion(out, y)) * y.shape[0]
            tot_obs += y.shape[0]
            if classification:
                pred = _predicted_class(out, probabilities)
                correct += int((pred == y.reshape(-1)).sum())
    acc = correct / tot_obs if classification else float("nan")
    return tot_loss / tot_obs, acc


# --------------------------------------------------------------------------------- fit
def fit(model: nn.Module, train: Dataset | tuple, val: Dataset | tuple | None = None, *,
        loss: str | Callable | None = None, epochs: int = 10, lr: float = 1e-3,
        batch_size: int = 32, weight_decay: float = 1e-2, device: str | torch.device = "auto",
        seed: int | None = 0, patience: int | None = None, schedule: str | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        progress: bool = True) -> History:
    """Train `model` in place with the lecture's loop; return the `History`.

    AdamW(lr, weight_decay), a shuffled DataLoader, ``model.train()`` for each epoch and
    ``model.eval()`` for validation; a tqdm bar per epoch shows the running mean loss.
    `loss`: "cross_entropy", "bce" (one output), "mse" or a callable(output, target); ``None``
    picks cross-entropy / BCE for classification data and MSE otherwise. Outputs are taken as
    logits, or as probabilities when the model ends in a Sigmoid/Softmax module (the
    lecture's LogisticModel and SimpleMLP). With `val`, the validation loss (and accuracy) is
    recorded each epoch; with `patience`, training stops after that many epochs without a
    lower validation loss and the best weights are restored.
    `schedule`: ``None`` (constant `lr`), ``"cosine"`` (cosine decay to 0 over all steps) or
    ``"onecycle"`` (Smith & Topin 2019: warm-up to `lr` over 30 % of the steps, then cosine
    decay), stepped after every batch. `augment` maps a training batch x to a transformed
    batch (one-input models). A data set whose ``x`` is a tuple trains ``model(*x)``. `seed` fixes the shuffling and the dropout/augmentation RNG (the global RNG is left
    untouched): same seed, same weights (on the same machine and thread count).
    The model ends in eval mode on `device`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fit() trains an nn.Module, got {type(model).__name__}.")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}.")
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        raise ValueError(f"patience must be a positive integer or None, got {patience!r}.")
    if schedule not in (None, "cosine", "onecycle"):
        raise ValueError(f"schedule must be None, 'cosine' or 'onecycle', got {schedule!r}.")
    if patience is not None and val is None:
        raise ValueError("early stopping (patience=...) needs validation data: pass val=.")
    x, y, cls = _as_tensors(train, "train")
    if augment is not None and len(_parts(x)) > 1:
        raise ValueError("augment= transforms one input tensor; this data set has several inputs.")
    val_t = _as_tensors(val, "val") if val is not None else None
    dev = pick_device(device)
    model.to(dev)
    name, criterion = _loss_fn(loss, y, cls, _output_count(model, x, dev),
                               outputs_probabilities(model))
    classification = name in ("cross_entropy", "bce") or (cls is True)

    hist = History(loss=name)
    start = time.perf_counter()
    best_state, best_loss, bad_epochs = None, float("inf"), 0
    rng_devices = [torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices, enabled=seed is not None):
        gen = None
        if seed is not None:
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
        loader = _loader(x, y, batch_size, True, gen)
        val_loader = _loader(val_t[0], val_t[1], max(batch_size, 256), False, None) if val_t else None
        optimiser = optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        total_steps = epochs * len(loader)
        if schedule == "cosine":
            scheduler = optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=total_steps)
        elif schedule == "onecycle":
            scheduler = optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=total_steps,
                                                      pct_start=0.3)
        else:
            scheduler = None
        for epoch in range(epochs):
            model.train()
            tot_obs, tot_loss = 0, 0.0
            bar = tqdm(loader, desc=f"Epoch {epoch + 1}/{epochs}", unit="batch",
                       disable=not progress, leave=False)
            for *xb, yb in bar:
                xb, yb = [t.to(dev) for t in xb], yb.to(dev)
                if augment is not None:
                    xb = [augment(xb[0])]
                optimiser.zero_grad()
                out = model(*xb)
                batch_loss = criterion(out, yb)
                batch_loss.backward()
                optimiser.step()
                if scheduler is not None:
                    scheduler.step()
                tot_obs += yb.shape[0]
                tot_loss += float(batch_loss.detach()) * yb.shape[0]
                bar.set_postfix(loss=f"{tot_loss / tot_obs:.4f}")
            hist.train_loss.append(tot_loss / tot_obs)
            if val_loader is not None:
                vl, va = _validate(model, val_loader, criterion, dev, classification)
                hist.val_loss.append(vl)
                hist.val_accuracy.append(va)
                if progress:
                    extra = f" - val acc: {va:.4f}" if classification else ""
                    tqdm.write(f"Epoch {epoch + 1}/{epochs} - loss: {hist.train_loss[-1]:.4f}"
                               f" - val loss: {vl:.4f}{extra}")
                if vl < best_loss:
                    best_loss, bad_epochs, hist.best_epoch = vl, 0, epoch + 1
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    bad_epochs += 1
                    if patience is not None and bad_epochs >= patience:
                        hist.stopped_early = True
                        break
            elif progress:
                tqdm.write(f"Epoch {epoch + 1}/{epochs} - loss: {hist.train_loss[-1]:.4f}")
    if patience is not None and best_state is not None:
        model.load_state_dict(best_state)      # early stopping: keep the best epoch's weights
    else:
        hist.best_epoch = hist.epochs          # the last epoch's weights are kept
    model.eval()
    hist.seconds = time.perf_counter() - start
    return hist


# ------------------------------------------------------------------------- save / load
def save(model: nn.Module, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write ``{"config", "state_dict", "meta"}`` atomically (temp file, then ``os.replace``).

    The model needs a ``config`` (every attrkit model has one) so `load` can rebuild it. `meta`
    must hold plain values (numbers, strings, lists, dicts, tensors) to stay loadable safely.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError("save() needs a model with a .config dict naming its constructor "
                         "(every attrkit.models model has one).")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": "attrkit-model-1", "config": dict(config), "state_dict": state,
               "meta": dict(meta or getattr(model, "meta", None) or {})}
    return atomic_write(path, lambda fh: torch.save(payload, fh), mode=0o600)   # as before: private to the user


def load(path: str | os.PathLike, *, trust: bool = False, weights_only: bool | None = None,
         map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model written by `save`, in eval mode, with ``model.meta`` restored.

    A ``.safetensors`` file (the zoo's format, with ``<stem>.json`` beside it) is read without pickle.
    Otherwise reads with ``torch.load(weights_only=True)``: tensors and plain containers only, so a
    crafted pickle cannot run code; such a file raises ValueError. Pass ``trust=True`` (or
    ``weights_only=False``) only for files you trust completely.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no model file at {path}.")
    if path.suffix == ".safetensors":               # a zoo file: tensors + <stem>.json, no pickle
        from .zoo import read_model   # imported here: the zoo imports this module
        return read_model(path)
    safe = not trust if weights_only is None else bool(weights_only)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=safe)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refused to load {path}: it contains objects that torch.load(weights_only=True) "
            "will not unpickle, and unpickling them could run arbitrary code. If you trust "
            "this file completely, opt in with load(path, trust=True) (i.e. weights_only=False)."
        ) from err
    except (RuntimeError, EOFError) as err:
        raise ValueError(f"could not read {path} as a model file: {err}") from err
    if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
        raise ValueError(f"{path} is not an attrkit model file (expected keys 'config' and "
                         "'state_dict', as written by attrkit.train.save).")
    model = build(payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.meta = dict(payload.get("meta") or {})
    return model.eval()
