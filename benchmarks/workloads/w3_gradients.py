"""W3: Saliency, SmoothGrad (20 samples) and GradientSHAP (20 samples) against Captum, bench_cnn, 16 crops.

Saliency is deterministic: results must agree to 1e-5. SmoothGrad: both libraries get the same noise
(Captum 0.9 draws it with ``torch.normal`` after a seed; the same draws are handed to attrkit through
``perturbations=``), so results must agree to 1e-4. GradientSHAP draws its baselines and path positions
differently in each library, so each result is compared with the converged value
``mean_r IG(x; r)`` (Captum IG, 64 Gauss-Legendre steps per background image r): attrkit's error must not
exceed 1.5x Captum's at the same sample count.
"""
from __future__ import annotations

import torch

from .. import inputs
from ..case import Case, Check, Impl, agree, rel_error
from .common import explain, have, values

SAMPLES = 20
NOISE_STD = 0.15
SEED = 0


def _captum_noise(x: torch.Tensor, n: int, std: float, seed: int) -> torch.Tensor:
    """The noise Captum 0.9's NoiseTunnel draws after ``torch.manual_seed(seed)`` (sample-major order)."""
    torch.manual_seed(seed)
    size = (x.shape[0] * n,) + tuple(x.shape[1:])
    return torch.normal(0, torch.tensor(std).repeat(size))


def _saliency_case(model, x, t) -> Case:
    def captum():
        from captum.attr import Saliency
        s = Saliency(model)
        return lambda: s.attribute(x, target=t, abs=False)
    impls = [Impl("attrkit", "attrkit", lambda: explain(model, x, "saliency", t), {}, primary=True)]
    if have("captum"):
        impls.append(Impl("captum", "captum", captum, {"abs": False}))
    return Case("W3a", "W3", "Saliency, bench_cnn, 16 x 3x64x64", model, impls,
                check=agree("captum" if have("captum") else "attrkit", 1e-5, values))


def _smoothgrad_case(model, x, t) -> Case:
    eps = _captum_noise(x, SAMPLES, NOISE_STD, SEED)

    def captum():
        from captum.attr import NoiseTunnel, Saliency
        nt = NoiseTunnel(Saliency(model))

        def run():
            torch.manual_seed(SEED)
            return nt.attribute(x, target=t, nt_type="smoothgrad", nt_samples=SAMPLES, stdevs=NOISE_STD, abs=False)
        return run
    impls = [Impl("attrkit", "attrkit", lambda: explain(model, x, "smoothgrad", t, base="saliency",
                                                         n_samples=SAMPLES, perturbations=eps),
                  {"n_samples": SAMPLES, "noise_std": NOISE_STD, "noise": "Captum's draws via perturbations="},
                  primary=True)]
    if have("captum"):
        impls.append(Impl("captum", "captum", captum, {"nt_samples": SAMPLES, "stdevs": NOISE_STD}))
    return Case("W3b", "W3", "SmoothGrad (saliency), 20 samples, bench_cnn, 16 x 3x64x64", model, impls,
                check=agree("captum" if have("captum") else "attrkit", 1e-4, values),
                notes=["attrkit's run gets the noise tensor ready-made (Captum draws it inside its timed call, "
                       "about 20 ms of the total)"])


def _gradient_shap_case(model, x, t, background, quick) -> Case:
    steps = 32 if quick else 64

    def reference():
        from captum.attr import IntegratedGradients
        ig = IntegratedGradients(model)
        acc = torch.zeros_like(x, dtype=torch.float64)
        for r in background:
            acc += ig.attribute(x, baselines=r[None].expand_as(x).contiguous(), target=t, n_steps=steps,
                                method="gausslegendre", internal_batch_size=64).double()
        return acc / len(background)

    def captum():
        from captum.attr import GradientShap
        gs = GradientShap(model)

        def run():
            import numpy as np
            torch.manual_seed(SEED)
            np.random.seed(SEED)        # Captum's GradientShap draws its baselines from NumPy's global generator
            return gs.attribute(x, baselines=background, target=t, n_samples=SAMPLES, stdevs=0.0)
        return run

    def check(outs):
        ref = reference()
        errs = {label: rel_error(values(out), ref) for label, out in outs.items()}
        peer = errs.get("captum")
        res = {}
        for label, err in errs.items():
            if label == "captum" or peer is None:
                res[label] = Check(err == err and err < 1.0, err, None, "relative L2 error vs the converged reference")
            else:
                ok = err <= 1.5 * peer
                res[label] = Check(ok, err, 1.5 * peer, "relative L2 error vs the converged reference "
                                   f"(Captum's: {peer:.3g}; allowed 1.5x)")
        return res

    impls = [Impl("attrkit", "attrkit", lambda: explain(model, x, "gradient_shap", t, baseline=background,
                                                         n_samples=SAMPLES, seed=SEED),
                  {"n_samples": SAMPLES, "background": f"{len(background)} photo crops", "seed": SEED},
                  primary=True)]
    if have("captum"):
        impls.append(Impl("captum", "captum", captum, {"n_samples": SAMPLES, "stdevs": 0.0}))
    return Case("W3c", "W3", "GradientSHAP, 20 samples, bench_cnn, 16 x 3x64x64", model, impls, check=check,
                notes=[f"reference: mean over the {len(background)} background images of Captum IG "
                       f"({steps} Gauss-Legendre steps), the expectation GradientSHAP samples"])


def cases(cfg) -> list[Case]:
    model = inputs.model("bench_cnn")
    allx = inputs.crops(20, 64)
    x, background = allx[:16].contiguous(), allx[16:20].contiguous()
    t = inputs.predicted(model, x)
    return [_saliency_case(model, x, t), _smoothgrad_case(model, x, t),
            _gradient_shap_case(model, x, t, background, cfg.quick)]
