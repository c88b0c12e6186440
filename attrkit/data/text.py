"""A generated text classification set whose label is fixed by planted evidence tokens.

Every sentence is a run of neutral filler words with one to three *evidence* words planted at
random positions; all evidence words of a sentence come from its class's list, so the label is a
function of the evidence alone and the rationale (which tokens decide the label) is known exactly.
Sentences have random lengths and are padded at the end with the pad id.
"""

from __future__ import annotations

import numpy as np
import torch

from .dataset import Dataset

__all__ = ["text_evidence", "decode", "TEXT_VOCAB", "TEXT_EVIDENCE", "PAD_ID", "MASK_ID", "UNK_ID"]

SPECIAL = ("[PAD]", "[MASK]", "[UNK]")
PAD_ID, MASK_ID, UNK_ID = 0, 1, 2
TEXT_EVIDENCE: dict[str, tuple[str, ...]] = {
    "negative": ("bad", "awful", "poor", "terrible", "dull", "boring"),
    "positive": ("good", "great", "superb", "lovely", "brilliant", "moving"),
}
FILLER = ("the", "a", "film", "movie", "plot", "actor", "actors", "scene", "story", "was", "is",
          "and", "it", "this", "with", "of", "in", "on", "cast", "ending", "music", "director",
          "script", "camera", "we", "saw", "its", "at", "for", "by", "then", "there", "some",
          "long", "second", "part", "first", "time", "city", "night")
TEXT_VOCAB: tuple[str, ...] = SPECIAL + sum(TEXT_EVIDENCE.values(), ()) + FILLER


def text_evidence(n: int = 2000, max_len: int = 16, min_len: int = 6, seed: int = 0,
                  evidence: tuple[int, int] = (1, 3)) -> Dataset:
    """`n` token-id sentences of two classes; the label is fixed by the planted evidence words.

    Fields of the returned `Dataset`:

    - ``x``: token ids ``[n, max_len]`` (long), padded at the end with ``PAD_ID`` = 0;
    - ``attention_mask``: ``[n, max_len]`` bool, True on the ``min_len``..``max_len`` real tokens;
    - ``y``: 0 = "negative", 1 = "positive" (balanced: n // 2 of each, up to one);
    - ``masks`` (also ``.rationale``): ``[n, max_len]`` bool, True exactly on the evidence tokens;
    - ``meta``: ``vocab`` (id -> word), ``pad_id``, ``mask_id``, ``unk_id``, ``evidence`` (class ->
      its evidence ids), ``seed``.

    Each sentence holds ``k`` evidence words, ``k`` uniform in ``evidence`` (inclusive), all drawn
    from its class's list (``TEXT_EVIDENCE``) at distinct random positions; every other real token is
    a filler word that appears equally often in both classes. Same `seed`, same data.
    """
    for name, v in (("n", n), ("max_len", max_len), ("min_len", min_len)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}.")
    lo, hi = (int(v) for v in evidence)
    if not 1 <= lo <= hi <= min_len or min_len > max_len:
        raise ValueError(f"need 1 <= evidence[0] <= evidence[1] <= min_len <= max_len, got evidence="
                         f"{evidence}, min_len={min_len}, max_len={max_len}.")
    rng = np.random.default_rng(seed)
    word_id = {w: i for i, w in enumerate(TEXT_VOCAB)}
    ev_ids = [np.array([word_id[w] for w in TEXT_EVIDENCE[c]]) for c in TEXT_EVIDENCE]
    filler_ids = np.array([word_id[w] for w in FILLER])

    y = rng.permutation(np.arange(n) % 2)
    lengths = rng.integers(min_len, max_len + 1, size=n)
    k = rng.integers(lo, hi + 1, size=n)
    ids = np.full((n, max_len), PAD_ID, dtype=np.int64)
    rationale = np.zeros((n, max_len), dtype=bool)
    ids_real = rng.choice(filler_ids, size=(n, max_len))
    order = rng.random((n, max_len)).argsort(axis=1)        # a random permutation of positions per row
    ev_draw = rng.integers(0, len(ev_ids[0]), size=(n, hi))
    for i in range(n):
        L = int(lengths[i])
        ids[i, :L] = ids_real[i, :L]
        pos = order[i][order[i] < L][: k[i]]                  # k distinct positions among the real ones
        ids[i, pos] = ev_ids[y[i]][ev_draw[i, : k[i]]]
        rationale[i, pos] = True
    x = torch.from_numpy(ids)
    meta = {"name": "text_evidence", "seed": seed, "vocab": list(TEXT_VOCAB), "pad_id": PAD_ID,
            "mask_id": MASK_ID, "unk_id": UNK_ID, "max_len": max_len, "min_len": min_len,
            "evidence": {c: [word_id[w] for w in ws] for c, ws in TEXT_EVIDENCE.items()},
            "rule": "label = the class whose evidence words the sentence holds (1-3 of them)"}
    return Dataset(x, torch.from_numpy(y).long(), list(TEXT_EVIDENCE), None,
                   torch.from_numpy(rationale), meta, attention_mask=x != PAD_ID)


def decode(ids: torch.Tensor) -> list[str]:
    """Words of one sentence of token ids (padding dropped)."""
    return [TEXT_VOCAB[int(i)] for i in ids.reshape(-1) if int(i) != PAD_ID]
