"""Integer inputs: token ids and category codes.

Integer inputs are never cast to the model's float dtype. What each family does with them:

- **Gradient and propagation methods** attribute at the embedding: the ``nn.Embedding`` that reads the ids is
  found by running the model once (the embedding called on the input tensor itself; several such embeddings
  are refused with their names — pass ``layer=`` to choose). ``layer=`` overrides. The method runs at that
  layer (Integrated Gradients: the path runs in embedding space from the reference's embedding to the
  input's, as Captum's ``LayerIntegratedGradients``), and the per-token score is the **sum over the embedding
  dimension**: ``values[n, l] = sum_d A[n, l, d]``. The full ``[N, L, D]`` values stay in
  ``info["embedding_values"]``; ``info["token_scores"]`` says how they were reduced.
- **References** are token ids: ``baseline=0`` (the default ``"zeros"`` is token id 0), any integer, an
  integer tensor of ids per position, or ``"pad"`` / ``"mask"`` / ``"unk"`` with ``pad_id=`` / ``mask_id=`` /
  ``unk_id=`` (or read from a Hugging Face ``model.config``). A float tensor whose last dimension is the
  embedding size is an embedding *vector* reference (``[D]``, ``[L, D]`` or ``[N, L, D]``): it is fed through a
  reserved id past the vocabulary which a hook on the embedding maps to the vector, so every method (IG,
  DeepLIFT, the games) sees it as one more token.
- **Games** (occlusion, feature ablation, LIME, KernelSHAP, Shapley, sampling) mask tokens by substituting the
  reference token id; the default players are tokens (one per position), a label tensor ``[N, L]`` groups
  positions into spans (words). Named float references (mean, blur, noise) are refused.

Padding positions are no players by default (label ``-1`` in the players, see ``games.players``: kept as they are,
attribution 0): those with ``attention_mask == 0`` in ``forward_kwargs``, else those holding the pad id
(``pad_id=``, ``model.config.pad_token_id`` or a ``model.pad_id`` attribute). Give ``players=`` to choose yourself.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

TOKEN_NAMES = ("pad", "mask", "unk")
ID_OPTIONS = tuple(f"{n}_id" for n in TOKEN_NAMES)   # explain(..., pad_id=) etc.
_FLOAT_NAMES = ("mean", "blur", "noise")
# methods whose points are perturbations of the input itself: token ids cannot take them
_INPUT_NOISE = ("gradient_shap", "smoothgrad", "smoothgrad_sq", "vargrad")
_INPUT_MAPS = ("guided_grad_cam", "score_cam")      # CAMs that work on the input itself


def is_integer(x) -> bool:
    """True for integer tensors (token ids, category codes); bool and floating tensors are not."""
    return isinstance(x, torch.Tensor) and not x.is_floating_point() and not x.is_complex() \
        and x.dtype != torch.bool


def value_dtype(t: torch.Tensor, fallback: torch.dtype | None = None) -> torch.dtype:
    """The floating dtype attributions of ``t`` are computed in: ``t``'s own, else ``fallback`` (default float32)."""
    if t.is_floating_point():
        return t.dtype
    return fallback if fallback is not None and fallback.is_floating_point else torch.get_default_dtype()


# ------------------------------------------------------------------------------------------ the embedding
def find_embedding(model, x: torch.Tensor, forward=None) -> tuple[str, nn.Module]:
    """``(name, module)`` of the ``nn.Embedding`` that reads the integer input ``x``.

    Runs ``forward(x[:1])`` (default ``model(x[:1])``) once with pre-hooks on every ``nn.Embedding``; the
    embeddings called on that very tensor count (or, when none is, on a tensor equal to it). One -> it; none ->
    ``ValueError`` (the model has no embedding for this input); several -> ``ValueError`` naming them."""
    if not isinstance(model, nn.Module):
        raise TypeError("gradient methods on integer inputs attribute at the model's nn.Embedding, so the model must "
                        "be a torch.nn.Module; use a perturbation method (kernel_shap, occlusion, lime) instead")
    embs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
    if not embs:
        raise ValueError(_no_embedding(x, "the model has no nn.Embedding layer"))
    row = x[:1]
    seen: list[tuple[str, nn.Module, torch.Tensor]] = []
    handles = []
    for name, mod in embs:
        def pre(m, args, kwargs, name=name):
            ids = args[0] if args else kwargs.get("input")
            if isinstance(ids, torch.Tensor):
                seen.append((name, m, ids))
        handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
    try:
        with torch.no_grad():
            (forward or model)(row)
    finally:
        for h in handles:
            h.remove()
    same = [(n, m) for n, m, t in seen if t is row]
    if not same:
        same = [(n, m) for n, m, t in seen if t.shape == row.shape and not t.is_floating_point()
                and torch.equal(t.to(row.device, row.dtype), row)]
    uniq = list(dict((id(m), (n, m)) for n, m in same).values())
    if not uniq:
        called = sorted({n for n, _, _ in seen})
        detail = f"its embeddings ({', '.join(called) or 'none'}) read other tensors" if called else \
            "none of its nn.Embedding layers ran"
        raise ValueError(_no_embedding(x, f"no nn.Embedding reads this input ({detail})"))
    if len(uniq) > 1:
        raise ValueError(f"several nn.Embedding layers read the integer input: {', '.join(n for n, _ in uniq)}; "
                         "pass layer= with the one to attribute at")
    return uniq[0]


def _no_embedding(x, why: str) -> str:
    return (f"the input has integer dtype {x.dtype} (token ids / category codes), so gradient methods attribute "
            f"at the nn.Embedding that reads it, but {why}. Pass layer= with a layer after the ids, use a "
            "perturbation method (kernel_shap, occlusion, feature_ablation, lime, shapley), or, if the values "
            "are numbers rather than ids, pass x.float()")


# ------------------------------------------------------------------------------------------ references
def named_token_id(name: str, model, ids: dict) -> int:
    """The id of ``"pad"`` / ``"mask"`` / ``"unk"``: from ``pad_id=`` etc., else the model's HF config."""
    given = ids.get(f"{name}_id")
    if given is None:
        cfg = getattr(model, "config", None)
        given = getattr(cfg, f"{name}_token_id", None) if cfg is not None else None
    if given is None:
        raise ValueError(f"baseline {name!r} needs the {name} token's id: pass {name}_id=<int> (the model has no "
                         f"config.{name}_token_id to read it from)")
    return _check_id(given, f"{name}_id")


def _check_id(v, what: str) -> int:
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError(f"{what} must be a token id (an integer) for integer inputs, got {v!r}")
    if v < 0:
        raise ValueError(f"{what} must be a token id >= 0, got {v!r}")
    return int(v)


def token_reference(spec, x: torch.Tensor, *, name: str = "baseline", seed=None) -> torch.Tensor:
    """A reference of token ids shaped like the integer input ``x`` (``core.references.make_reference`` for ints).

    ``None`` / ``"zeros"``: token id 0; an integer: that id everywhere; an integer tensor that broadcasts to ``x``:
    ids per position. Float names and non-integral numbers are refused (token ids cannot be averaged or blurred);
    ``"pad"``/``"mask"``/``"unk"`` must have been resolved to ids by ``explain`` (pass ``pad_id=``...)."""
    from .checks import broadcast_to_batch
    if spec is None or (isinstance(spec, str) and spec == "zeros"):
        return torch.zeros_like(x)
    if isinstance(spec, str):
        if spec in TOKEN_NAMES:
            raise ValueError(f"{name}={spec!r} needs the token's id: pass {spec}_id=<int> to ak.explain, or give "
                             "the id itself")
        if spec in _FLOAT_NAMES:
            raise ValueError(f"{name}={spec!r} is a float reference, but the input holds integer token ids / codes "
                             f"that cannot be averaged, blurred or drawn as noise; give a token id (e.g. {name}=0, "
                             f"{name}='pad' with pad_id=) or an embedding vector")
        raise ValueError(f"unknown {name} {spec!r} for integer inputs; give a token id, 'pad'/'mask'/'unk' with "
                         "pad_id=/mask_id=/unk_id=, an integer tensor of ids, or an embedding vector")
    if isinstance(spec, (int, float)) or (isinstance(spec, torch.Tensor) and spec.numel() == 1
                                          and not spec.is_floating_point()):
        return torch.full_like(x, _check_id(spec, name))
    if type(spec).__name__ == "ndarray":
        spec = torch.from_numpy(spec)
    if isinstance(spec, torch.Tensor):
        if not is_integer(spec):
            raise ValueError(f"{name} is a {spec.dtype} tensor but the input holds integer token ids; give ids of "
                             "an integer dtype, or (for gradient and game methods through ak.explain) an embedding "
                             "vector whose last dimension is the embedding size")
        if (spec < 0).any():
            raise ValueError(f"{name} holds negative token ids")
        return broadcast_to_batch(spec, x, name)
    raise TypeError(f"{name} for integer inputs must be a token id, a name ('zeros', 'pad', 'mask', 'unk'), "
                    f"an integer tensor or an embedding vector, got {type(spec).__name__}")


class VectorReference:
    """An embedding-vector reference fed through reserved ids ``V + k`` (``V`` = the vocabulary size).

    While active, a pre-hook on the embedding clamps reserved ids into range and a forward hook replaces the
    embedding rows at those positions by ``vectors[k]``. ``ids`` is the reference as token ids, usable by every
    method like any other id reference."""

    def __init__(self, emb: nn.Embedding, vec: torch.Tensor, x: torch.Tensor, name: str = "baseline"):
        d = emb.embedding_dim
        if vec.shape[-1] != d:
            raise ValueError(f"{name} is a float tensor of shape {tuple(vec.shape)}; as an embedding-vector reference "
                             f"its last dimension must be the embedding size {d}")
        w = emb.weight
        lead = tuple(x.shape)
        try:
            full = torch.broadcast_to(vec.to(device=w.device, dtype=w.dtype), lead + (d,))
        except RuntimeError:
            raise ValueError(f"{name} of shape {tuple(vec.shape)} does not broadcast to the embedding output "
                             f"{lead + (d,)}; give [{d}], [{', '.join(map(str, lead[1:]))}, {d}] or "
                             f"[{', '.join(map(str, lead))}, {d}]") from None
        if not torch.isfinite(full).all():
            raise ValueError(f"{name} (embedding vector) contains NaN or infinite values")
        # one reserved id per vector given (positions that share a vector by broadcasting share its id)
        kept = tuple(vec.shape[:-1])
        n_vec = int(torch.tensor(kept).prod()) if kept else 1
        codes = torch.broadcast_to(torch.arange(n_vec, device=x.device).view(kept if kept else ()), lead)
        self.vocab = emb.num_embeddings
        self.ids = (codes + self.vocab).to(x.dtype).contiguous()
        self.vectors = vec.reshape(n_vec, d).to(device=w.device, dtype=w.dtype)
        self.full = full
        self.emb = emb

    @contextlib.contextmanager
    def active(self):
        """Hooks on the embedding while the block runs (always removed)."""
        state = {}

        def pre(m, args):
            ids = args[0]
            state["ids"] = ids
            if bool((ids >= self.vocab).any()):
                return (ids.clamp(max=self.vocab - 1),) + tuple(args[1:])
            return None

        def post(m, args, out):
            ids = state.pop("ids", None)
            if ids is None:
                return None
            reserved = ids >= self.vocab
            if not bool(reserved.any()):
                return None
            vec = self.vectors[(ids - self.vocab).clamp(min=0).long()]
            return torch.where(reserved.unsqueeze(-1), vec.to(out.dtype), out)

        h1 = self.emb.register_forward_pre_hook(pre)
        h2 = self.emb.register_forward_hook(post)
        try:
            yield self
        finally:
            h1.remove()
            h2.remove()


# ------------------------------------------------------------------------------------------ explain's hook
@dataclass
class TokenPlan:
    """What ``explain`` does differently for integer inputs (built by :func:`prepare`)."""
    layer_name: str | None
    layer: nn.Module | None
    options: dict
    reduce: bool = False                  # sum the layer values over the embedding dimension
    per_token: bool = False               # set by restore: the values are per token (the input's shape)
    shape: tuple = ()                     # the integer input's shape: layer values [*shape, D] are per token
    notes: dict = field(default_factory=dict)
    vector: VectorReference | None = None

    def context(self):
        return self.vector.active() if self.vector is not None else contextlib.nullcontext()

    def restore(self, result):
        """Per-token scores from ``[N, *x.shape[1:], D]`` values; the full values kept in ``info``."""
        info = dict(result.info)
        info.update(self.notes)
        v = result.values
        if self.reduce and v.dim() == len(self.shape) + 1 and tuple(v.shape[:-1]) == self.shape:
            info["embedding_values"] = result.values
            info["token_scores"] = f"sum over the embedding dimension ({result.values.shape[-1]}) of the " \
                                   f"values at layer {self.layer_name!r}"
            result.values = result.values.sum(-1)
            self.per_token = True
        if self.vector is not None:
            result.baseline = self.vector.full           # the reference as the embedding vectors given
        result.info = info
        return result


def forward_error(err: Exception, x: torch.Tensor) -> Exception:
    """A clearer error when a model fails on integer inputs it expected as floats (attrkit no longer casts)."""
    if is_integer(x) and isinstance(err, RuntimeError) and any(w in str(err) for w in ("dtype", "Long", "Int")):
        return TypeError(f"the model failed on the integer input ({x.dtype}): {err}. attrkit passes integer inputs "
                         "as they are (token ids, category codes, read by an nn.Embedding); if the values are "
                         "numbers, pass x.float()")
    return err


def prepare(model, x: torch.Tensor, spec, layer_name, layer, options: dict, noise=None, prep=None) -> TokenPlan:
    """For integer ``x``: choose the embedding, resolve token-id references, refuse what cannot work.

    ``prep``: ``core.call.prepare``'s result (its engine model carries forward_args/kwargs and unpacks several
    inputs). Returns a :class:`TokenPlan`; for float inputs it only checks that no ``pad_id=`` etc. was given."""
    options = dict(options)
    forward = None
    if prep is not None:
        from .adapter import rows_of

        def forward(row):
            with rows_of(prep.model, torch.arange(row.shape[0])):
                return prep.model(row)
        layout = prep.layout
        if layout is not None and len(layout) > 1 and is_integer(x) and spec.family in ("gradient", "propagation") \
                and layer is None:
            raise ValueError("gradient methods on several integer inputs: pass layer= with the embedding to attribute "
                             "at (its values are per position of the input it reads), or attribute one input and "
                             "pass the others through forward_args= / forward_kwargs=")
    id_opts = {f"{n}_id": options.pop(f"{n}_id") for n in TOKEN_NAMES if f"{n}_id" in options}
    if not is_integer(x):
        if id_opts:
            raise ValueError(f"{', '.join(id_opts)} name token ids, but the input is a {x.dtype} tensor, not ids")
        return TokenPlan(layer_name, layer, options)
    needs_grad = spec.family in ("gradient", "propagation")
    if noise is not None and noise is not False or spec.name in _INPUT_NOISE:
        raise ValueError(f"{spec.name if noise in (None, False) else 'noise='} perturbs the input with random "
                         "noise / random points between input and baseline, which integer token ids cannot take; "
                         "use method='integrated_gradients' (at the embedding), 'saliency' or 'input_x_gradient'")
    if spec.name in _INPUT_MAPS:
        raise ValueError(f"{spec.name} multiplies a map at the input's resolution by the input gradient (or masks "
                         "the input with it), which integer token ids do not have; use grad_cam / hires_cam at a "
                         "layer, or guided_backprop / integrated_gradients (at the embedding)")
    plan = TokenPlan(layer_name, layer, options)
    if needs_grad and layer is None:
        plan.layer_name, plan.layer = find_embedding(model, x, forward)
        plan.notes["layer_chosen"] = f"the nn.Embedding {plan.layer_name!r} reading the token ids (automatic)"
    # per-token scores: at the embedding, or at any layer giving one vector per position ([*x.shape, D])
    plan.reduce, plan.shape = needs_grad, tuple(x.shape)
    for key in ("baseline", "masker"):
        if key not in options:
            continue
        v = options[key]
        if isinstance(v, str) and v in TOKEN_NAMES:
            options[key] = named_token_id(v, model, id_opts)
            plan.notes[f"{key}_token"] = f"{v} = token id {options[key]}"
        elif isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() >= 1:
            emb = plan.layer if isinstance(plan.layer, nn.Embedding) else None
            if emb is None:
                try:
                    emb = find_embedding(model, x, forward)[1]
                except ValueError as e:
                    raise ValueError(f"{key} is a float tensor (an embedding vector) but {e}") from None
            plan.vector = VectorReference(emb, v, x, key)
            options[key] = plan.vector.ids
            plan.notes[f"{key}_vector"] = "embedding-vector reference (fed through reserved ids past the vocabulary)"
    if spec.players and options.get("players") is None and layer is None:
        pad = padding(model, x, prep, id_opts)
        if pad is not None and bool(pad.any()):
            if x.dim() != 2 or (prep is not None and prep.layout is not None and len(prep.layout) > 1):
                pass                        # tokens of [N, L] inputs only; other layouts keep their defaults
            else:
                lab = torch.arange(x.shape[1], device=x.device).expand_as(x).masked_fill(pad, -1)
                options["players"] = lab if prep is None or prep.layout is None else prep.layout.structure([lab])
                plan.notes["players"] = (f"one per token; {int(pad.sum())} padding positions ({pad_source(prep)}) "
                                         "are no players: kept as they are, attribution 0")
    if spec.baseline and "baseline" not in options and "masker" not in options:
        plan.notes["reference"] = "token id 0 (the default 'zeros' reads as a token id for integer inputs)"
    return plan


def _attention_mask(prep):
    kwargs = getattr(getattr(prep, "model", None), "forward_kwargs", None) or {}
    m = kwargs.get("attention_mask")
    return m if isinstance(m, torch.Tensor) else None


def pad_source(prep) -> str:
    return "attention_mask 0" if _attention_mask(prep) is not None else "the pad id"


def padding(model, x: torch.Tensor, prep=None, ids: dict | None = None) -> torch.Tensor | None:
    """Padding positions of token ids ``x`` ``[N, L]`` (bool), or None when unknown: ``attention_mask == 0``
    from ``forward_kwargs``, else the positions holding the pad id (``pad_id=``, ``model.config.pad_token_id``,
    or a ``model.pad_id`` / ``model.pad_token_id`` attribute)."""
    m = _attention_mask(prep)
    if m is not None and tuple(m.shape) == tuple(x.shape):
        return m.to(x.device) == 0
    pid = (ids or {}).get("pad_id")
    if pid is None:
        cfg = getattr(model, "config", None)
        pid = getattr(cfg, "pad_token_id", None) if cfg is not None else None
    if pid is None:
        pid = getattr(model, "pad_id", getattr(model, "pad_token_id", None))
    if isinstance(pid, bool) or not isinstance(pid, int):
        return None
    return x == pid
