"""W12: the cost of the Captum-compatible classes (``attrkit.compat.captum``) over ``ak.explain`` doing the same
work: the compat layer only converts arguments and rebuilds Captum's return structure, so it should cost at
most 5 % more.

W12a: IntegratedGradients, 50 Gauss-Legendre steps, ``bench_cnn`` on 16 photo crops 3x64x64, zero baselines,
predicted class. W12b: Occlusion, 8x8 windows with stride 4 over all channels, ``bench_cnn`` on 4 crops 64x64.
W12c: FeatureAblation, one feature per column, ``bench_mlp`` on 256 rows of 20 features. W12d:
``attrkit.compat.shap.KernelExplainer`` (every output, 512 evaluations, 16 background rows) against
``ak.explain(..., "kernel_shap", all_classes=True)`` on 16 rows of ``bench_mlp``. The results must agree to 1e-4
before any timing.
"""
from __future__ import annotations

import torch

from .. import inputs
from ..case import Case, Impl, agree, ratio_target
from .common import explain, values

TOL = 1e-4
LIMIT = 1.05


def _compat(cls: str, model, call):
    def make():
        from attrkit.compat import captum as attr
        obj = getattr(attr, cls)(model)
        return lambda: call(obj)
    return make


def _case(cid, title, model, native, compat, settings, check) -> Case:
    impls = [Impl("attrkit", "attrkit", lambda: native, settings, primary=True),
             Impl("attrkit", "compat", compat, settings)]
    return Case(cid, "W12", title, model, impls, check=check,
                targets=[ratio_target(f"compat / ak.explain time <= {LIMIT}", "compat", "attrkit", LIMIT)])


def cases(cfg) -> list[Case]:
    cnn, mlp = inputs.model("bench_cnn"), inputs.model("bench_mlp")
    img = inputs.crops(16, 64)
    t = inputs.predicted(cnn, img)
    ig = _case("W12a", "IntegratedGradients 50 steps: compat class vs ak.explain, bench_cnn, 16 x 3x64x64", cnn,
               explain(cnn, img, "integrated_gradients", t, steps=50, rule="gauss_legendre", baseline="zeros"),
               _compat("IntegratedGradients", cnn,
                       lambda o: o.attribute(img, baselines=0.0, target=t.tolist(), n_steps=50)),
               {"steps": 50, "rule": "gauss_legendre"}, agree("attrkit", TOL, values))
    small = img[:4]
    ts = inputs.predicted(cnn, small)
    occ = _case("W12b", "Occlusion 8x8 stride 4: compat class vs ak.explain, bench_cnn, 4 x 3x64x64", cnn,
                explain(cnn, small, "occlusion", ts, window=(3, 8, 8), stride=(3, 4, 4), baseline="zeros"),
                _compat("Occlusion", cnn, lambda o: o.attribute(small, sliding_window_shapes=(3, 8, 8),
                                                                  strides=(3, 4, 4), baselines=0.0,
                                                                  target=ts.tolist())),
                {"window": (3, 8, 8), "stride": (3, 4, 4)}, agree("attrkit", TOL, values))
    tab = inputs.tabular(256, 20)
    tt = inputs.predicted(mlp, tab)
    fa = _case("W12c", "FeatureAblation, one feature per column: compat class vs ak.explain, bench_mlp, 256 x 20",
               mlp, explain(mlp, tab, "feature_ablation", tt, players=torch.arange(20).view(1, 20), baseline=0.0,
                            spread="paint"),
               _compat("FeatureAblation", mlp, lambda o: o.attribute(tab, target=tt.tolist())),
               {"baseline": 0.0}, agree("attrkit", TOL, values))
    bg = inputs.tabular(16, 20) * 0.5
    rows = tab[:16]
    ks = _case("W12d", "KernelExplainer 512 evaluations, every output: compat.shap vs ak.explain, bench_mlp, 16 x 20",
               mlp, explain(mlp, rows, "kernel_shap", 0, masker=_background(bg), all_classes=True, n_samples=512,
                            spread="paint", seed=0),
               _shap_kernel(mlp, bg, rows), {"n_samples": 512, "background rows": 16},
               agree("attrkit", TOL, _per_output))
    return [ig, occ, fa, ks]


def _background(rows):
    from attrkit.games.maskers import Background
    return Background(rows)


def _shap_kernel(model, bg, rows):
    def make():
        from attrkit.compat import shap as shap_compat
        explainer = shap_compat.KernelExplainer(model, bg)
        return lambda: explainer.shap_values(rows, nsamples=512, seed=0)
    return make


def _per_output(out) -> torch.Tensor:
    """``[N, outputs, features]`` from either form: attrkit's ``info["player_values_all"]`` or SHAP's layout."""
    if hasattr(out, "info"):
        return out.info["player_values_all"].double()
    return torch.as_tensor(out).permute(0, 2, 1).double()
