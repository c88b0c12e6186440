"""W4: Occlusion (Zeiler & Fergus) against Captum's Occlusion: zero baseline, all channels occluded at once,
overlapping windows averaged. W4a: 16x16 window, stride 8, chelsea 224x224 through ``vgg16_quarter``
(27 x 27 = 729 windows). W4b: 8x8 window, stride 4, 4 photo crops 64x64 through ``bench_cnn`` (225 windows
each). Deterministic: results must agree to 1e-4. Captum runs as users call it
(``perturbations_per_eval=1``) and with as many perturbations per call as attrkit's chunk."""
from __future__ import annotations

from .. import inputs
from ..case import Case, Impl, agree, unavailable
from .common import attrkit_method, explain, have, values

TOL = 1e-4


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


def _case(cid, title, model, x, window, stride, cfg) -> Case:
    t = inputs.predicted(model, x)
    impls = [Impl("attrkit", "attrkit", lambda: explain(model, x, "occlusion", t, window=window, stride=stride,
                                                         baseline="zeros"),
                  {"window": window, "stride": stride, "baseline": "zeros"}, primary=True)]
    targets = []   # issue 4 sets no occlusion target: the ratio is reported
    if have("captum"):
        try:
            chunk = _chunk(model, x)
        except Exception:  # noqa: BLE001 - the game module may change; fall back to the core's cap
            chunk = 32
        impls.append(Impl("captum", "captum", _captum(model, x, t, window, stride, 1),
                          {"perturbations_per_eval": 1}))
        impls.append(Impl("captum", f"captum ppe={chunk}", _captum(model, x, t, window, stride, chunk),
                          {"perturbations_per_eval": chunk}))
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
