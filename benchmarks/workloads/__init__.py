"""The workloads, by name. Each module's ``cases(cfg)`` returns its ``Case`` objects (cheap to build: all
computing happens when the runner calls the implementations)."""
from __future__ import annotations

import importlib
import re

WORKLOADS = {
    "W1": ("w1_ig", "Integrated Gradients, 50 steps (time, chunk sizes)"),
    "W2": ("w2_completeness", "IG cost to reach a 1 % completeness gap"),
    "W3": ("w3_gradients", "Saliency, SmoothGrad, GradientSHAP"),
    "W4": ("w4_occlusion", "Occlusion"),
    "W5": ("w5_sampling", "KernelSHAP and LIME on 50 superpixels, error at equal evaluations"),
    "W6": ("w6_exact_shapley", "Exact Shapley values, 12 and 16 players"),
    "W7": ("w7_layer_cells", "Layer-cell Shapley vs pixel-grid Shapley"),
    "W8": ("w8_cams", "Score-CAM and Ablation-CAM, 32 images"),
    "W9": ("w9_runs", "Data-set run, 2,000 images"),
    "W10": ("w10_multi_input", "Integrated Gradients on two inputs with a per-sample forward argument"),
    "W11": ("w11_text_ig", "IG at a text model's embedding vs Captum LayerIntegratedGradients"),
    "W12": ("w12_compat", "Cost of the Captum-compatible classes over ak.explain on the same work"),
    "W13": ("w13_attnlrp", "AttnLRP vs one forward+backward of the model"),
    "W14": ("w14_token_shapley", "Patch-token Shapley at a block vs the pixel grid at equal evaluations"),
    "W15": ("w15_rules_resnet50", "LRP vs Zennit and DeepLIFT vs Captum on resnet50, 224 px, batch 8"),
}


def _key(name: str) -> str | None:
    m = re.fullmatch(r"(W\d+)([a-z]\w*)?", name.strip(), flags=re.IGNORECASE)
    return m.group(1).upper() if m else None


def check_names(names) -> list[str]:
    """The names asked for, validated: workloads (W1) or case ids (W1a); ValueError for unknown ones."""
    wanted = [n.strip() for n in (names or []) if n.strip()]
    bad = [n for n in wanted if _key(n) not in WORKLOADS]
    if bad:
        raise ValueError(f"unknown workload(s) {', '.join(bad)}; choose from {', '.join(WORKLOADS)} "
                         "(or a case id such as W1a; `--list` shows them)")
    return wanted


def build(names, cfg) -> list:
    """Cases for the workload names (``W1``) or case ids (``W1a``) asked for; all when ``names`` is empty."""
    from ..case import unavailable
    wanted = check_names(names)
    keys = [k for k in WORKLOADS if not wanted or any(_key(w) == k for w in wanted)]
    out = []
    for key in keys:
        module, title = WORKLOADS[key]
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
            cases = mod.cases(cfg)
        except Exception as e:  # noqa: BLE001 - report, do not stop the suite
            cases = [unavailable(key, key, title, f"could not build the workload: {type(e).__name__}: {e}")]
        exact = [w for w in wanted if _key(w) == key and len(w) > len(key)]
        if exact:
            cases = [c for c in cases if c.id.lower() in {w.lower() for w in exact}]
        out.extend(cases)
    return out


def find(case_id: str, cfg):
    """The case with id ``case_id`` (used by the memory probe in a fresh process)."""
    for c in build([case_id], cfg):
        if c.id.lower() == case_id.lower():
            return c
    raise KeyError(f"no case {case_id!r}")


def externals(names, cfg) -> list[dict]:
    """Results of workloads that also run in another environment (W8, W15 in .venv-crosscheck)."""
    wanted = [_key(n) for n in (names or []) if n.strip()]
    out = []
    for key, (module, _) in WORKLOADS.items():
        if wanted and key not in wanted:
            continue
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except Exception:  # noqa: BLE001 - already reported by build()
            continue
        fn = getattr(mod, "external_results", None)
        if fn is not None:
            try:
                out.extend(fn(cfg))
            except Exception as e:  # noqa: BLE001
                out.append({"id": f"{key}-x", "workload": key, "title": f"{key} in another environment",
                            "status": "error", "reason": f"{type(e).__name__}: {e}", "rows": [], "targets": [],
                            "notes": [], "extra": {}})
    return out
