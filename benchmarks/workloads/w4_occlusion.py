"""W4: Occlusion (Zeiler & Fergus) against Captum's Occlusion: zero baseline, all channels occluded at once,
overlapping windows averaged. W4a: 16x16 window, stride 8, chelsea 224x224 through ``vgg16_quarter``
(27 x 27 = 729 windows). W4b: 8x8 window, stride 4, 4 photo crops 64x64 through ``bench_cnn`` (225 windows
each). Deterministic: results must agree to 1e-4. Captum runs as users call it
(``perturbations_per_eval=1``), with 8 and with as many perturbations per call as attrkit's chunk; the target
(issue 19) holds attrkit's incremental occlusion (window cones recomputed layer by layer, ``local=None``) to a
fraction of Captum's best of them. W4b also times attrkit's whole network per window (``local=False``)."""
from __future__ import annotations

from .. import inputs
from ..case import Case, Impl, Target, agree, unavailable
from .common import attrkit_method, explain, have, values

TOL = 1e-4
PPE = (1, 8)            # Captum's perturbations_per_eval tried besides attrkit's chunk
LIMITS = {"W4a": 0.35, "W4b": 0.3}     # issue 19: attrkit / Captum at its best perturbations_per_eval


def _captum(model, x, t, window, stride, ppe):
    def make():
        from captum.attr import Occlusion
        occ = Occlusion(model)
        c = x.shape[1]
        return lambda: occ.attribute(x, sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
                                     baselines=0.0, target=t, perturbations_per_eval=ppe)
    return make


def _chunk(model, x) -> int:
    """attrkit's rows per game call for this model (its coalition-game chunk rule)."""
    from attrkit.core.problem import Problem
    from attrkit.core.targets import resolve_target
    out = model(x[:1]).detach()
    return Problem(model=model, inputs=x, outputs=out, target=resolve_target(None, out)).chunk(grad=False,
                                                                                               coalitions=True)


def best_captum(limit: float) -> Target:
    """attrkit's median time / the fastest Captum row's (over its perturbations_per_eval) <= ``limit``."""
    def evaluate(result: dict):
        rows = result.get("rows", [])
        ak = next((r for r in rows if r["primary"]), None)
        peers = [r for r in rows if r["library"] == "captum" and r.get("median_s") and r["check"]["ok"]]
        if ak is None or not ak.get("median_s") or not peers:
            return None, None, "not measured"
        best = min(peers, key=lambda r: r["median_s"])
        value = ak["median_s"] / best["median_s"]
        return value <= limit, value, f"attrkit / {best['label']} (fastest Captum) = {value:.3g} (target <= {limit})"
    return Target(f"attrkit <= {limit}x Captum Occlusion at its best perturbations_per_eval", evaluate)


def _case(cid, title, model, x, window, stride, cfg) -> Case:
    t = inputs.predicted(model, x)
    impls = [Impl("attrkit", "attrkit", lambda: explain(model, x, "occlusion", t, window=window, stride=stride,
                                                         baseline="zeros"),
                  {"window": window, "stride": stride, "baseline": "zeros"}, primary=True)]
    if cid == "W4b":
        impls.append(Impl("attrkit", "attrkit whole network",
                          lambda: explain(model, x, "occlusion", t, window=window, stride=stride,
                                          baseline="zeros", local=False), {"local": False}))
    targets = [best_captum(LIMITS[cid])]
    if have("captum"):
        try:
            chunk = _chunk(model, x)
        except Exception:  # noqa: BLE001 - the game module may change; fall back to the core's cap
            chunk = 32
        impls.append(Impl("captum", "captum", _captum(model, x, t, window, stride, 1),
                          {"perturbations_per_eval": 1}))
        for ppe in sorted(set(PPE[1:]) | {chunk}):
            impls.append(Impl("captum", f"captum ppe={ppe}", _captum(model, x, t, window, stride, ppe),
                              {"perturbations_per_eval": ppe}))
    return Case(cid, "W4", title, model, impls, check=agree("captum" if have("captum") else "attrkit", TOL, values),
                targets=targets)


def cases(cfg) -> list[Case]:
    why = attrkit_method("occlusion")
    if why:
        return [unavailable("W4", "W4", "Occlusion", why)]
    vgg = inputs.model("vgg16_quarter")
    cnn = inputs.model("bench_cnn")
    out = [] if cfg.quick else [
        _case("W4a", "Occlusion 16x16 stride 8, vgg16_quarter, 1 x 3x224x224", vgg, inputs.chelsea(224), 16, 8, cfg)]
    out.append(_case("W4b", "Occlusion 8x8 stride 4, bench_cnn, 4 x 3x64x64", cnn, inputs.crops(4, 64), 8, 4, cfg))
    return out
