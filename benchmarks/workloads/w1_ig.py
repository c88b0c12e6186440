"""W1: Integrated Gradients, 50 Gauss-Legendre steps, against Captum's IntegratedGradients.

W1a: ``bench_cnn``, 16 photo crops 3x64x64, zero baseline, predicted class. Captum as users call it (all
800 rows at once) and with ``internal_batch_size`` equal to attrkit's chunk. W1b: one 224x224 image (chelsea)
through ``vgg16_quarter``. W1c: how attrkit's time depends on its chunk size (``batch_size=``).
"""
from __future__ import annotations

from .. import inputs
from ..case import Case, Impl, agree, ratio_target
from .common import default_chunk, explain, have, values

STEPS = 50
TOL = 1e-4      # relative L2 difference allowed between attrkit and Captum (same rule, steps, baseline)
CHUNKS = (8, 16, 32, 64, 128)


def _captum(model, x, target, internal_batch_size=None):
    def make():
        from captum.attr import IntegratedGradients
        ig = IntegratedGradients(model)
        return lambda: ig.attribute(x, target=target, n_steps=STEPS, method="gausslegendre",
                                    internal_batch_size=internal_batch_size)
    return make


def _case(cid, title, model, x, target, extra_impls=(), with_ibs=True, repeats=None, notes=()):
    chunk = default_chunk(model, x)
    impls = [Impl("attrkit", "attrkit", lambda: explain(model, x, "integrated_gradients", target, steps=STEPS,
                                                           rule="gauss_legendre", baseline="zeros"),
                  {"steps": STEPS, "rule": "gauss_legendre", "batch_size": f"default ({chunk})"}, primary=True)]
    impls += list(extra_impls)
    if have("captum"):
        impls.append(Impl("captum", "captum", _captum(model, x, target),
                          {"n_steps": STEPS, "method": "gausslegendre", "internal_batch_size": None}))
        if with_ibs:
            impls.append(Impl("captum", f"captum ibs={chunk}", _captum(model, x, target, chunk),
                              {"n_steps": STEPS, "method": "gausslegendre", "internal_batch_size": chunk}))
    targets = [ratio_target("IG time ratio attrkit/Captum <= 0.9", "attrkit", "captum", 0.9)]
    return Case(cid, "W1", title, model, impls, check=agree("captum" if have("captum") else "attrkit", TOL, values),
                targets=targets if have("captum") else [], repeats=repeats,
                notes=list(notes) + ([] if have("captum") else ["captum is not installed: no peer row"]))


def cases(cfg) -> list[Case]:
    out = []
    cnn = inputs.model("bench_cnn")
    x = inputs.crops(16, 64)
    t = inputs.predicted(cnn, x)
    out.append(_case("W1a", "IG 50 steps, bench_cnn, 16 x 3x64x64", cnn, x, t, with_ibs=not cfg.quick))
    vgg = inputs.model("vgg16_quarter")
    img = inputs.chelsea(224)
    out.append(_case("W1b", "IG 50 steps, vgg16_quarter, 1 x 3x224x224", vgg, img, inputs.predicted(vgg, img),
                     with_ibs=False))
    if not cfg.quick:
        cnn2 = inputs.model("bench_cnn")
        variants = [Impl("attrkit", f"attrkit batch_size={b}",
                         (lambda b=b: explain(cnn2, x, "integrated_gradients", t, steps=STEPS, rule="gauss_legendre",
                                              baseline="zeros", batch_size=b)),
                         {"steps": STEPS, "batch_size": b}) for b in CHUNKS]
        c = _case("W1c", "IG 50 steps, bench_cnn: attrkit chunk size (batch_size=) sweep", cnn2, x, t,
                  extra_impls=variants, with_ibs=False, repeats=2,
                  notes=["2 timed runs per row (a sweep, not a headline figure; keeps the suite under 30 minutes)"])
        c.targets = []
        out.append(c)
    return out
