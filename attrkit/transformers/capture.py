"""Attention weights as tensors attrkit owns, on every common attention implementation.

``with Capture(model, mode) as cap:`` every attention call of a forward pass computes its weights
``A = softmax(q k^T * scale + mask)`` ``[N, heads, T, S]`` where attrkit can see them: ``cap.records`` lists
``(site name, A)`` in call order, with ``A`` in the autograd graph (so ``dA`` of a target is a plain gradient).
Sites:

- ``nn.MultiheadAttention`` (also inside ``nn.TransformerEncoderLayer``): the module's forward is replaced for the
  block by one computing its output from its inputs with the same projections, masks (``attn_mask``,
  ``key_padding_mask``, ``is_causal``) and output projection (hooks on the module still run);
- Hugging Face models (``config._attn_implementation``): the model is switched to attrkit's registered attention
  function (eager attention maths) for the block and restored after;
- timm ``Attention`` (``qkv``, ``attn_drop``, ``fused_attn``): the fused kernel is switched off for the block and
  a hook on ``attn_drop`` (whose input is the softmax) hands ``A`` over.

``mode`` changes the backward pass for AttnLRP (Achtibat et al. 2024): ``"attnlrp"`` splits the gradient of both
bilinear products (``q k^T`` and ``A v``) uniformly, 1/2 to each factor, and keeps softmax's own gradient (the
paper's softmax rule ``R_i = x_i (R_i - s_i sum_j R_j)`` in gradient x input form); ``"constant"`` treats the
attention weights as constants (``A`` detached: all relevance flows through ``v``, conservative).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MODES = (None, "attnlrp", "constant")
_HF_NAME = "attrkit"
_ACTIVE: list["Capture"] = []


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t, factor):
        ctx.factor = factor
        return t.view_as(t)

    @staticmethod
    def backward(ctx, g):
        return ctx.factor * g, None


def scale_grad(t: torch.Tensor, factor: float) -> torch.Tensor:
    """``t`` in the forward pass, ``factor`` times its gradient in the backward pass (no work forward)."""
    return _ScaleGrad.apply(t, factor) if t.requires_grad else t


def half_grad(t: torch.Tensor) -> torch.Tensor:
    """``t`` in the forward pass, half its gradient in the backward pass."""
    return scale_grad(t, 0.5)


def _bilinear(a, b, uniform: bool):
    """``a @ b``; ``uniform``: half the gradient to each factor, by halving it once at the output when that is
    smaller than the two factors (the same gradients either way; 0.5 is exact)."""
    if not uniform:
        return a @ b
    if a.shape[-2] * b.shape[-1] <= a.shape[-2] * a.shape[-1] + b.shape[-2] * b.shape[-1]:
        return half_grad(a @ b)
    return half_grad(a) @ half_grad(b)


def _is_timm_attention(m: nn.Module) -> bool:
    return isinstance(getattr(m, "qkv", None), nn.Linear) and hasattr(m, "attn_drop") and hasattr(m, "fused_attn") \
        and hasattr(m, "num_heads")


def _hf_configs(model: nn.Module) -> list:
    seen, out = set(), []
    for m in model.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "_attn_implementation") and id(cfg) not in seen:
            seen.add(id(cfg))
            out.append(cfg)
    return out


def attention_sites(model: nn.Module) -> list[str]:
    """Names of the modules attrkit reads attention weights from (HF sites: modules holding q/k/v projections)."""
    names = []
    hf = bool(_hf_configs(model))
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention) or _is_timm_attention(m):
            names.append(name)
        elif hf and name and any(isinstance(getattr(m, a, None), nn.Linear) for a in ("q_proj", "query")) \
                and any(isinstance(getattr(m, a, None), nn.Linear) for a in ("k_proj", "key")):
            names.append(name)
    return names


class Capture:
    """See the module docstring."""

    def __init__(self, model: nn.Module, mode: str | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.model, self.mode = model, mode
        self.records: list[tuple[str, torch.Tensor]] = []
        self.logits: list[torch.Tensor] | None = None     # a list: the softmax inputs are kept too (budget.py)
        self.keep_weights = True                          # False: nothing reads the weights (AttnLRP's rules)
        self._names = {id(m): n for n, m in model.named_modules()}
        self._undo: list = []

    def reset(self) -> None:
        self.records = []

    # ----------------------------------------------------------------- the one place weights pass through
    def weights(self, module: nn.Module, a: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and not a.requires_grad:
            a = a.detach().requires_grad_(True)       # frozen model: the weights are a leaf of the graph
        self.records.append((self._names.get(id(module), "?"), a))
        return a.detach() if self.mode == "constant" else a

    def attend(self, module, q, k, v, scale, bias=None, need_weights: bool = False) -> torch.Tensor:
        """``softmax(q k^T * scale + bias) v`` for ``[N, H, T, d]`` tensors, through :meth:`weights`. When no one
        reads the weights (``keep_weights`` off, as under AttnLRP's rules, and the caller needs none) the fused
        kernel runs, with the same gradients: uniform rule = q and k gradients / 4, v / 2 (A's share of
        ``A v`` times q's share of ``q k^T``); constant weights = q and k cut off."""
        uniform = self.mode == "attnlrp"
        if not (self.keep_weights or need_weights or self.logits is not None):
            if self.mode == "constant":
                q, k = q.detach(), k.detach()
            elif uniform:
                q, k, v = scale_grad(q, 0.25), scale_grad(k, 0.25), half_grad(v)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
        scores = _bilinear(q * scale, k.transpose(-2, -1), uniform)
        if bias is not None:
            scores = scores + bias
        z = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores
        if self.logits is not None:
            self.logits.append(z)
        a = self.weights(module, torch.softmax(z, dim=-1).to(q.dtype))
        return _bilinear(a, v, uniform)

    # ----------------------------------------------------------------- install / remove
    def __enter__(self) -> "Capture":
        fast = getattr(getattr(torch.backends, "mha", None), "get_fastpath_enabled", None)
        if fast is not None:          # nn.TransformerEncoderLayer's fused path would skip its self_attn module
            old_fast = fast()
            torch.backends.mha.set_fastpath_enabled(False)
            self._undo.append(lambda: torch.backends.mha.set_fastpath_enabled(old_fast))
        for name, m in self.model.named_modules():
            if isinstance(m, nn.MultiheadAttention):     # its forward replaced: its own maths would be discarded
                self._undo.append(_patch_forward(m, lambda *a, m=m, **kw: self._mha_forward(m, a, kw)))
            elif _is_timm_attention(m):
                old = m.fused_attn
                m.fused_attn = False
                self._undo.append(lambda m=m, old=old: setattr(m, "fused_attn", old))
                self._undo.append(m.attn_drop.register_forward_hook(
                    lambda mod, args, out, owner=m: self._timm_weights(owner, out)).remove)
                if self.mode == "attnlrp":        # q k^T and A v: half the gradient to q, k and v
                    self._undo.append(m.qkv.register_forward_hook(lambda mod, args, out: half_grad(out)).remove)
        configs = _hf_configs(self.model)
        if configs:
            _register_hf()
            for cfg in configs:
                old = cfg._attn_implementation
                cfg._attn_implementation = _HF_NAME
                self._undo.append(lambda cfg=cfg, old=old: setattr(cfg, "_attn_implementation", old))
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        while self._undo:
            self._undo.pop()()

    def _timm_weights(self, owner, a):
        a = self.weights(owner, a)
        return half_grad(a) if self.mode == "attnlrp" else a

    def _mha_forward(self, m: nn.MultiheadAttention, args, kwargs):
        names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
                 "is_causal")
        call = dict(zip(names, args))
        call.update(kwargs)
        if m.bias_k is not None or m.add_zero_attn:
            raise ValueError("attention methods do not support nn.MultiheadAttention with add_bias_kv or "
                             "add_zero_attn")
        q, k, v = call["query"], call["key"], call["value"]
        if not m.batch_first:
            q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        n, t, e = q.shape
        s, h = k.shape[1], m.num_heads
        d = e // h
        if m._qkv_same_embed_dim:
            wq, wk, wv = m.in_proj_weight.chunk(3)
        else:
            wq, wk, wv = m.q_proj_weight, m.k_proj_weight, m.v_proj_weight
        bq, bk, bv = m.in_proj_bias.chunk(3) if m.in_proj_bias is not None else (None, None, None)
        split = lambda x, w, b, length: F.linear(x, w, b).view(n, length, h, d).transpose(1, 2)
        qh, kh, vh = split(q, wq, bq, t), split(k, wk, bk, s), split(v, wv, bv, s)
        bias = _mask(call.get("attn_mask"), q.dtype, (n, h, t, s))
        if call.get("is_causal") and call.get("attn_mask") is None:
            bias = _mask(torch.ones(t, s, dtype=torch.bool, device=q.device).triu(1), q.dtype, (n, h, t, s))
        kpm = _mask(call.get("key_padding_mask"), q.dtype, (n, 1, 1, s))
        bias = kpm if bias is None else bias if kpm is None else bias + kpm
        before = len(self.records)
        need = call.get("need_weights", True)
        out = self.attend(m, qh, kh, vh, d ** -0.5, bias, need).transpose(1, 2).reshape(n, t, e)
        out = m.out_proj(out)
        if not m.batch_first:
            out = out.transpose(0, 1)
        a = self.records[before][1] if len(self.records) > before else None
        weights = (a.mean(1) if call.get("average_attn_weights", True) else a) if need and a is not None else None
        return out, weights


def _patch_forward(m: nn.Module, fn):
    """Make ``fn`` the forward of ``m`` (hooks still run around it); returns the undo."""
    had = "forward" in m.__dict__
    old = m.__dict__.get("forward")
    m.forward = fn

    def undo():
        if had:
            m.forward = old
        else:
            m.__dict__.pop("forward", None)
    return undo


def _mask(mask, dtype, shape):
    """A boolean (True = not allowed) or additive float mask as an additive bias broadcastable to ``shape``."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    mask = mask.to(dtype)
    if mask.dim() == 2 and shape[1] == 1:               # key padding [N, S]
        return mask.view(shape[0], 1, 1, shape[3])
    if mask.dim() == 3:                                  # [N * H, T, S]
        return mask.view(shape[0], -1, shape[2], shape[3])
    return mask


# --------------------------------------------------------------------------------- Hugging Face
_hf_done = False


def _register_hf() -> None:
    global _hf_done
    if _hf_done:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    AttentionInterface.register(_HF_NAME, _hf_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(_HF_NAME, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    _hf_done = True


def _hf_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention (as ``transformers``' ``eager_attention_forward``) through the active :class:`Capture`."""
    if key.shape[1] != query.shape[1]:                       # grouped key/value heads
        rep = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(rep, 1), value.repeat_interleave(rep, 1)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    bias = None
    if attention_mask is not None:
        bias = attention_mask[..., :key.shape[-2]]
        if bias.dtype == torch.bool:
            bias = torch.zeros(bias.shape, dtype=query.dtype, device=bias.device).masked_fill(~bias, float("-inf"))
    if not _ACTIVE:
        raise RuntimeError("attrkit's attention function ran outside its context")
    cap = _ACTIVE[-1]
    before = len(cap.records)
    out = cap.attend(module, query, key, value, scale, bias)
    return out.transpose(1, 2).contiguous(), cap.records[-1][1] if len(cap.records) > before else None
