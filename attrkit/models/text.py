"""A small transformer text classifier over token ids (the zoo's ``text_transformer``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._base import DEFAULT_SEED, with_config, register, seeded

__all__ = ["TextTransformer"]


def _sinusoids(length: int, d: int) -> torch.Tensor:
    """Fixed positional encodings (Vaswani et al. 2017): sin / cos of pos / 10000^(2i/d)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return pe


@register("text_transformer")
class TextTransformer(nn.Module):
    """``embedding`` (one ``nn.Embedding``, the pad row fixed at 0) + fixed sinusoidal positions,
    ``encoder`` (``nn.TransformerEncoder``: `layers` post-norm layers of width `d_model`, `heads`
    heads, feed-forward `ff`, no dropout), a mean over the real tokens, ``classifier`` (Linear).

    ``forward(input_ids [N, L] long, attention_mask=None)``: the mask (True / 1 on real tokens) is
    ``input_ids != pad_id`` when not given. A row without any real token (every token masked,
    e.g. a coalition game's empty coalition) attends to and averages over all its positions, so
    the output stays finite.
    """

    def __init__(self, vocab_size: int, num_classes: int = 2, max_len: int = 16, d_model: int = 32,
                 heads: int = 4, layers: int = 1, ff: int = 64, pad_id: int = 0, *,
                 seed: int | None = DEFAULT_SEED) -> None:
        super().__init__()
        for name, v in (("vocab_size", vocab_size), ("num_classes", num_classes),
                        ("max_len", max_len), ("d_model", d_model), ("heads", heads),
                        ("layers", layers), ("ff", ff)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}.")
        if d_model % heads or d_model % 2:
            raise ValueError(f"d_model ({d_model}) must be even and divisible by heads ({heads}).")
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id must lie in [0, {vocab_size}), got {pad_id}.")
        self.pad_id = pad_id
        with seeded(seed):
            self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
            layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.classifier = nn.Linear(d_model, num_classes)
        self.register_buffer("positions", _sinusoids(max_len, d_model), persistent=False)
        with_config(self, {"name": "text_transformer", "vocab_size": vocab_size,
                      "num_classes": num_classes, "max_len": max_len, "d_model": d_model,
                      "heads": heads, "layers": layers, "ff": ff, "pad_id": pad_id, "seed": seed})

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [N, L] token ids, got shape {tuple(input_ids.shape)}.")
        L = input_ids.shape[1]
        if L > self.positions.shape[0]:
            raise ValueError(f"sentences of {L} tokens exceed max_len={self.positions.shape[0]}.")
        keep = (input_ids != self.pad_id) if attention_mask is None else attention_mask.bool()
        keep = keep | ~keep.any(1, keepdim=True)             # an all-masked row: use every position
        h = self.embedding(input_ids) + self.positions[:L].to(self.embedding.weight.dtype)
        h = self.encoder(h, src_key_padding_mask=~keep)
        w = keep.to(h.dtype).unsqueeze(-1)
        return self.classifier((h * w).sum(1) / w.sum(1))
