"""Token attributions against known rationales: the text part of ``docs/results.md``.

:func:`text_rationale_table` explains the zoo's ``text_transformer`` on held-out ``text_evidence`` sentences, whose
label is fixed by planted evidence words (the rationale, known exactly), with Integrated Gradients at the
embedding, KernelSHAP over tokens, occlusion and LIME, and scores each map over the sentence's real tokens
(padding left out):

- ``rationale_auc``: ROC AUC of the token scores as a detector of the evidence tokens (1 = every evidence token
  above every filler token, 0.5 = chance), averaged over sentences;
- ``pointing_game``: the highest-scoring token is an evidence token (tied maxima count by their share on it);
- ``relevance_mass``: share of the positive relevance on the evidence tokens.

A random map gives the chance row. ``python -m attrkit.experiments text_rationale --out docs/`` recomputes the
table and writes it as a section at the end of ``docs/results.md`` (between markers, replacing its previous
version, so the other sections stay as they are).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .results import marked_section, replace_marked_section
from .table import Table

START, END = "<!-- text-rationale:start -->", "<!-- text-rationale:end -->"
COMMAND = "python -m attrkit.experiments text_rationale --out docs/"
QUICK = {"n": 16, "n_samples": 128, "steps": 16}
TITLE = "Token attributions on text: rationale AUC and token pointing game"


def _methods(pad: int, n_samples: int, steps: int) -> list[tuple[str, str, dict]]:
    return [
        ("integrated_gradients", f"IG at the embedding, {steps} Gauss-Legendre steps, all-pad reference",
         {"steps": steps, "baseline": "pad", "pad_id": pad}),
        ("kernel_shap", f"KernelSHAP over tokens, {n_samples} evaluations, masked token -> pad",
         {"n_samples": n_samples, "baseline": "pad", "pad_id": pad}),
        ("occlusion", "occlusion of one token at a time, -> pad", {"window": 1, "baseline": "pad", "pad_id": pad}),
        ("lime", f"LIME over tokens, {n_samples} samples, masked token -> pad",
         {"n_samples": n_samples, "baseline": "pad", "pad_id": pad}),
    ]


def token_scores(values: torch.Tensor, rationale: torch.Tensor, real: torch.Tensor) -> dict:
    """Per-sentence rationale AUC, pointing game and relevance mass over the real tokens, averaged.

    values, rationale, real: ``[N, L]`` (scores, evidence tokens, non-padding tokens). Sentences whose real
    tokens are all (or none) evidence have no AUC and are left out of its mean."""
    aucs, points, masses = [], [], []
    for v, r, m in zip(values.double(), rationale.bool(), real.bool()):
        v, r = v[m], r[m]
        pos, neg = v[r], v[~r]
        if len(pos) and len(neg):
            diff = pos.view(-1, 1) - neg.view(1, -1)
            aucs.append(float((diff > 0).double().mean() + 0.5 * (diff == 0).double().mean()))
        top = v == v.max()
        points.append(float((top & r).sum()) / float(top.sum()))
        p = v.clamp_min(0)
        masses.append(float(p[r].sum() / p.sum()) if float(p.sum()) > 0 else float("nan"))
    mean = lambda xs: float(torch.tensor(xs, dtype=torch.float64).nanmean()) if xs else float("nan")
    sem = lambda xs: float(torch.tensor(xs, dtype=torch.float64).std() / len(xs) ** 0.5) if len(xs) > 1 else 0.0
    return {"rationale_auc": mean(aucs), "auc_sem": sem(aucs), "pointing_game": mean(points),
            "relevance_mass": mean(masses)}


def text_rationale_table(n: int = 200, *, n_samples: int = 500, steps: int = 64, seed: int = 0,
                         progress: bool | None = None) -> Table:
    """Rationale AUC, token pointing game and relevance mass of IG / KernelSHAP / occlusion / LIME on the
    ``text_transformer`` zoo model over ``n`` held-out ``text_evidence`` sentences (see the module docstring)."""
    import attrkit as ak
    from .. import zoo
    start = time.perf_counter()
    model = zoo.pretrained("text_transformer").eval()
    data = zoo.dataset("text_transformer")
    n = min(n, len(data))
    ids, y, rationale = data.x[:n], data.y[:n], data.rationale[:n].bool()
    real = data.attention_mask[:n].bool()
    pad = int(data.meta["pad_id"])
    with torch.no_grad():
        accuracy = float((model(ids).argmax(1) == y).double().mean())
    rows, notes = [], []
    g = torch.Generator().manual_seed(seed)
    rows.append({"method": "random (chance)", "settings": "uniform random scores",
                 **token_scores(torch.rand(ids.shape, generator=g, dtype=torch.float64), rationale, real),
                 "evals_per_sentence": 0, "seconds": 0.0})
    for name, text, opts in _methods(pad, n_samples, steps):
        t0 = time.perf_counter()
        a = ak.explain(model, ids, name, target=y, seed=seed, progress=progress, **opts)
        row = {"method": name, "settings": text, **token_scores(a.values, rationale, real),
               "evals_per_sentence": round(int(a.info["n_evals"]) / n), "seconds": time.perf_counter() - t0}
        if name == "integrated_gradients":
            notes.append(f"IG's median relative completeness gap: {float(a.info['relative_gap'].median()):.3f}")
        rows.append(row)
    notes.append("scores over each sentence's real tokens (padding left out); target = the true class "
                 f"(the model's held-out accuracy on these sentences: {accuracy:.3f}); a masked token becomes the "
                 "pad token, which the model leaves out of attention (it derives its mask from the ids); padding "
                 "positions are no players in the games")
    settings = {"model": "text_transformer (zoo)", "data": f"text_evidence held-out, {n} sentences x "
                f"{ids.shape[1]} token ids", "seed": seed, "kernel_shap/lime samples": n_samples, "ig steps": steps}
    t = Table(rows, name="text_rationale", title=TITLE, settings=settings, seconds=time.perf_counter() - start,
              notes=notes)
    t.description = (" ".join((text_rationale_table.__doc__ or "").split())
                     + " `rationale_auc`: ROC AUC of the token scores for the evidence tokens (mean over sentences; "
                       "`auc_sem` its standard error); `pointing_game`: the top token is evidence; "
                       "`relevance_mass`: share of positive relevance on the evidence.")
    return t



def section_markdown(table: Table) -> str:
    """The section as written into ``docs/results.md`` (with its markers)."""
    return marked_section(table, START, END, COMMAND)


def write_section(table: Table, path) -> Path:
    """Put the section at the end of ``path`` (``results.md``), replacing an earlier version of it."""
    return replace_marked_section(path, START, END, section_markdown(table))


def text_section(out=None, *, quick: bool = False, n: int | None = None, progress: bool | None = False):
    """Compute the table (``quick``: 16 sentences, 128 samples, 16 steps) and, with ``out``, write its section
    into ``out/results.md``. Returns (the section's Markdown, the file written or None)."""
    kw = dict(QUICK) if quick else {"n": n} if n is not None else {}
    t = text_rationale_table(progress=progress, **kw)
    return section_markdown(t), (write_section(t, Path(out) / "results.md") if out is not None else None)
