"""W8: Score-CAM and Ablation-CAM on 32 photo crops (64x64) through ``bench_cnn`` at its last convolution
(``features.7``, 64 channels at 32x32), against pytorch-grad-cam at equal batch size.

pytorch-grad-cam needs torchvision, which imports only beside torch 2.14.1: in attrkit's main environment
(torch 2.13) attrkit's times are reported and each result is checked against a short independent
implementation of the paper's formula in this file (untimed row). Where ``.venv-crosscheck`` (torch 2.14.1,
built by ``make crosscheck``) exists, the same workload also runs there with pytorch-grad-cam as the peer and
its rows are added to the report (case ids W8a-x, W8b-x). Maps are compared at the layer's resolution after
pytorch-grad-cam's post-processing (ReLU, min-max per image) within 1e-3.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import inputs
from ..case import Case, Check, Impl, rel_error, ratio_target, unavailable
from .common import attrkit_method, crosscheck_results, have

LAYER = "features.7"
N_IMAGES = 32


def _norm(cam: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's post-processing at the layer's resolution: ReLU, then min-max per image."""
    c = torch.as_tensor(cam).double().clamp_min(0)
    c = c.reshape(c.shape[0], -1)
    c = c - c.min(1, keepdim=True).values
    return c / (1e-7 + c.max(1, keepdim=True).values)


@torch.no_grad()
def reference_cam(model, layer, x, t, kind: str, chunk: int = 64) -> torch.Tensor:
    """Score-CAM (Wang et al. 2020) / Ablation-CAM (Desai & Ramaswamy 2020) straight from the papers."""
    store = {}

    def grab(_m, _a, out):
        store["a"] = out
    h = layer.register_forward_hook(grab)
    try:
        logits = model(x)
    finally:
        h.remove()
    acts = store["a"]
    n, k = acts.shape[:2]
    w = torch.empty(n, k, dtype=torch.float64)
    for i in range(n):
        if kind == "score_cam":
            up = F.interpolate(acts[i:i + 1], size=x.shape[2:], mode="bilinear", align_corners=True)[0]
            lo = up.reshape(k, -1).min(1).values.view(k, 1, 1)
            hi = up.reshape(k, -1).max(1).values.view(k, 1, 1)
            masks = (up - lo) / (hi - lo + 1e-8)
            masked = x[i:i + 1] * masks.unsqueeze(1)
            s = torch.cat([model(masked[j:j + chunk])[:, t[i]] for j in range(0, k, chunk)])
            w[i] = torch.softmax(s.double(), 0)
        else:
            y = logits[i, t[i]].double()
            scores = []
            for j in range(0, k, chunk):
                m = min(chunk, k - j)
                a = acts[i:i + 1].repeat(m, 1, 1, 1)
                a[torch.arange(m), torch.arange(j, j + m)] = 0

                def replace(_m, _a, out, a=a):
                    return a
                h = layer.register_forward_hook(replace)
                try:
                    scores.append(model(x[i:i + 1].repeat(m, 1, 1, 1))[:, t[i]].double())
                finally:
                    h.remove()
            w[i] = (y - torch.cat(scores)) / y
    return (w.view(n, k, 1, 1) * acts.double()).sum(1).clamp_min(0)


def _cases(cfg, kind: str, cid: str, model, x, t) -> Case:
    layer = dict(model.named_modules())[LAYER]
    from .w4_occlusion import _chunk
    chunk = _chunk(model, x)
    impls = [Impl("attrkit", "attrkit", lambda: (lambda: __import__("attrkit").explain(
        model, x, kind, target=t, layer=LAYER, batch_size=chunk, progress=False)),
        {"layer": LAYER, "batch_size": chunk}, primary=True)]
    peer = have("pytorch_grad_cam")
    if peer:
        def make():
            from pytorch_grad_cam import AblationCAM, ScoreCAM
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
            cam = (ScoreCAM if kind == "score_cam" else AblationCAM)(model=model, target_layers=[layer])
            cam.batch_size = chunk
            targets = [ClassifierOutputTarget(int(c)) for c in t]
            return lambda: cam(input_tensor=x, targets=targets)
        impls.append(Impl("pytorch-grad-cam", "pytorch-grad-cam", make, {"batch_size": chunk}))
    else:
        impls.append(Impl("reference", "paper formula (check only)",
                          lambda: (lambda: reference_cam(model, layer, x, t, kind)), {}, timed=False))

    def values(label, out):
        if hasattr(out, "values") and isinstance(out.values, torch.Tensor):
            return _norm(out.values)
        if label.startswith("pytorch-grad-cam"):     # input-size maps: compare at the layer size
            return None
        return _norm(out)

    def check(outs):
        a = outs["attrkit"]
        res = {"attrkit": None}
        for label, out in outs.items():
            if label == "attrkit":
                continue
            if label.startswith("pytorch-grad-cam"):
                import numpy as np
                ref = torch.as_tensor(np.asarray(out)).double()                       # [N, H, W], min-max
                mine = _norm(a.values).view(a.values.shape[0], 1, *a.values.shape[-2:])
                mine = _norm(F.interpolate(mine, size=ref.shape[-2:], mode="bilinear", align_corners=False))
                err = rel_error(mine, ref.reshape(ref.shape[0], -1))
                tol = 1e-2
            else:
                err, tol = rel_error(values("attrkit", a), values(label, out)), 1e-3
            res[label] = Check(True, 0.0, tol, "reference")
            res["attrkit"] = Check(err <= tol, err, tol, f"normalised maps vs {label}")
        return res

    targets = [ratio_target(f"{kind} time ratio attrkit/pytorch-grad-cam <= 1.0 at equal batch size",
                            "attrkit", "pytorch-grad-cam", 1.0)] if peer else []
    notes = [] if peer else ["pytorch-grad-cam is not importable beside torch 2.13 (it needs torchvision): the peer "
                             "comparison runs in .venv-crosscheck (rows W8a-x, W8b-x when that environment exists)"]
    return Case(cid, "W8", f"{'Score-CAM' if kind == 'score_cam' else 'Ablation-CAM'}, {N_IMAGES} x 3x64x64, "
                f"bench_cnn at {LAYER}", model, impls, check=check, targets=targets, notes=notes)


def cases(cfg) -> list[Case]:
    out = []
    model = inputs.model("bench_cnn")
    x = inputs.crops(N_IMAGES, 64)
    t = inputs.predicted(model, x)
    for kind, cid in (("score_cam", "W8a"), ("ablation_cam", "W8b")):
        why = attrkit_method(kind)
        out.append(unavailable(cid, "W8", kind, why) if why else _cases(cfg, kind, cid, model, x, t))
    return out


def external_results(cfg) -> list[dict]:
    """Run W8 in ``.venv-crosscheck`` (torch 2.14.1 + pytorch-grad-cam) and return its case results."""
    return crosscheck_results(cfg, "W8", ("pytorch_grad_cam",), "Score-CAM / Ablation-CAM vs pytorch-grad-cam",
                              ("grad-cam",))
