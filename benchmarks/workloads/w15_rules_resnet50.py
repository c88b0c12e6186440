"""W15: the rule methods on torchvision's resnet50 (``weights=None``, BatchNorm statistics randomised), 224 px,
batch 8: LRP (EpsilonPlusFlat) against Zennit (with its ResNet canonizer), and DeepLIFT (zero reference) against
Captum's DeepLift on the module-per-use twin of the network (Captum's hooks need one ReLU module per call).

The models, inputs and runs are those of ``crosscheck/graphs.py`` (:func:`resnet50_peers`). They need
torchvision, which imports only beside torch 2.14.1: in attrkit's main environment the cases say so, and where
``.venv-crosscheck`` (built by ``make crosscheck``) exists the workload runs there (case ids W15a-x, W15b-x).
Checks: LRP equals Zennit's relevance within 1e-3 (relative L2); DeepLIFT sums to ``f(x) - f(0)`` within 1e-4
of ``max |f(x) - f(0)|`` (Captum's map differs at the stem, where it mixes the hooks of the ReLU feeding the max
pool; its own summation gap is stated).
"""
from __future__ import annotations

import importlib.util
import os

import torch

from ..case import Case, Check, Impl, ratio_target, rel_error, unavailable
from .common import ROOT, crosscheck_results, have

PEERS = ("torchvision", "zennit", "captum")
SIZE, N = 224, 8
WHY = ("needs torchvision (it imports only beside torch 2.14.1): runs in .venv-crosscheck, rows W15a-x and "
       "W15b-x, when that environment exists (make crosscheck builds it)")


def _graphs():
    spec = importlib.util.spec_from_file_location("attrkit_crosscheck_graphs",
                                                  os.path.join(ROOT, "crosscheck", "graphs.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _gap_check(label: str, values: torch.Tensor, delta: torch.Tensor, tol: float = 1e-4) -> Check:
    gap = float((values.reshape(values.shape[0], -1).double().sum(1) - delta).abs().max())
    err = gap / float(delta.abs().max().clamp_min(1e-30))
    return Check(err <= tol, err, tol, f"{label}: summation gap / max |f(x) - f(0)|")


def cases(cfg) -> list[Case]:
    missing = [m for m in PEERS if not have(m)]
    titles = (("W15a", "LRP EpsilonPlusFlat vs Zennit"), ("W15b", "DeepLIFT vs Captum DeepLift (module-per-use twin)"))
    if missing:
        return [unavailable(cid, "W15", f"{t}, resnet50 {SIZE} px, batch {N}", f"{', '.join(missing)} missing: {WHY}")
                for cid, t in titles]
    size, n = (112, 2) if cfg.quick else (SIZE, N)
    p = _graphs().resnet50_peers(size, n)
    with torch.no_grad():
        f = p.model(p.x).gather(1, p.t.view(-1, 1)).squeeze(1).double()
        delta = f - p.model(p.base).gather(1, p.t.view(-1, 1)).squeeze(1).double()

    def lrp_check(outs):
        err = rel_error(outs["attrkit"].values, outs["zennit"][1])
        return {"zennit": Check(True, 0.0, 1e-3, "reference"),
                "attrkit": Check(err <= 1e-3, err, 1e-3, "relative L2 difference to Zennit")}

    def dl_check(outs):
        diff = rel_error(outs["attrkit"].values, outs["captum"])
        peer = _gap_check("Captum", outs["captum"], delta, tol=float("inf"))
        peer.detail += f"; relative L2 difference attrkit/Captum {diff:.2e} (the stem's ReLU -> max pool)"
        return {"captum": peer, "attrkit": _gap_check("attrkit", outs["attrkit"].values, delta)}

    title = f"resnet50 (weights=None, BatchNorm randomised), {size} px, batch {n}"
    lrp = Case("W15a", "W15", f"LRP EpsilonPlusFlat vs Zennit, {title}", p.model,
               [Impl("attrkit", "attrkit", lambda: p.lrp, {"composite": "epsilon_plus_flat"}, primary=True),
                Impl("zennit", "zennit", lambda: p.zennit, {"canonizers": "ResNetCanonizer"})],
               check=lrp_check, repeats=3, memory=False,
               targets=[ratio_target("LRP resnet50: time ratio attrkit/Zennit <= 1.0", "attrkit", "zennit", 1.0)])
    dl = Case("W15b", "W15", f"DeepLIFT (zero reference) vs Captum DeepLift on the module-per-use twin, {title}",
              p.model, [Impl("attrkit", "attrkit", lambda: p.deeplift, {"baseline": 0.0}, primary=True),
                        Impl("captum", "captum", lambda: p.captum, {"model": "module-per-use twin"})],
              check=dl_check, repeats=3, memory=False, models=[p.twin],
              targets=[ratio_target("DeepLIFT resnet50: time ratio attrkit/Captum <= 0.8", "attrkit", "captum", 0.8)])
    return [lrp, dl]


def external_results(cfg) -> list[dict]:
    """Run W15 in ``.venv-crosscheck`` (torch 2.14.1, torchvision, Zennit, Captum)."""
    return crosscheck_results(cfg, "W15", PEERS, "LRP / DeepLIFT on resnet50 vs Zennit / Captum", ("zennit", "captum"))
