"""W10: Integrated Gradients on a model with two inputs and a non-attributed per-sample argument, against
Captum's IntegratedGradients with tuple inputs and ``additional_forward_args``.

W10a: an image-and-table model (``bench_cnn`` on 16 photo crops 3x64x64, ``bench_mlp`` on 16 rows of 20
features, a per-sample scale on the table branch, a linear layer mixing both), 50 Gauss-Legendre steps, zero
baselines, predicted class. Captum as users call it (all rows at once) and with ``internal_batch_size`` equal
to attrkit's chunk. The results are compared per input (concatenated) before any timing.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import inputs
from ..case import Case, Impl, agree, ratio_target
from .common import default_chunk, explain, have

STEPS = 50
TOL = 1e-4      # relative L2 difference allowed between attrkit and Captum (same rule, steps, baselines)


class ImageAndTable(nn.Module):
    """``mix([cnn(img), mlp(tab) * scale])``: two attributed inputs and one per-sample argument."""

    def __init__(self):
        super().__init__()
        self.cnn, self.mlp = inputs.model("bench_cnn"), inputs.model("bench_mlp")
        torch.manual_seed(0)
        self.mix = nn.Linear(10 + 1, 10)

    def forward(self, img, tab, scale):
        return self.mix(torch.cat([self.cnn(img), self.mlp(tab) * scale], 1))


def flat_values(out) -> torch.Tensor:
    """Either library's tuple of per-input attributions as one vector."""
    v = out.values if hasattr(out, "values") and not isinstance(out, (tuple, list)) else out
    return torch.cat([torch.as_tensor(t).reshape(-1) for t in v])


def _captum(model, x, target, scale, internal_batch_size=None):
    def make():
        from captum.attr import IntegratedGradients
        ig = IntegratedGradients(model)
        return lambda: ig.attribute(x, target=target, n_steps=STEPS, method="gausslegendre",
                                    additional_forward_args=(scale,), internal_batch_size=internal_batch_size)
    return make


def cases(cfg) -> list[Case]:
    model = ImageAndTable().eval()
    img, tab = inputs.crops(16, 64), inputs.tabular(16, 20)
    scale = torch.linspace(0.5, 1.5, 16).view(-1, 1)
    x = (img, tab)
    with torch.no_grad():
        target = model(img, tab, scale).argmax(1)
    chunk = default_chunk(model.cnn, img)
    impls = [Impl("attrkit", "attrkit", lambda: explain(model, x, "integrated_gradients", target, steps=STEPS,
                                                        rule="gauss_legendre", baseline="zeros",
                                                        forward_args=(scale,)),
                  {"steps": STEPS, "rule": "gauss_legendre", "forward_args": "(scale,)"}, primary=True)]
    if have("captum"):
        impls.append(Impl("captum", "captum", _captum(model, x, target, scale),
                          {"n_steps": STEPS, "method": "gausslegendre", "additional_forward_args": "(scale,)"}))
        if not cfg.quick:
            impls.append(Impl("captum", f"captum ibs={chunk}", _captum(model, x, target, scale, chunk),
                              {"n_steps": STEPS, "internal_batch_size": chunk}))
    targets = [ratio_target("multi-input IG time ratio attrkit/Captum <= 0.8", "attrkit", "captum", 0.8)]
    return [Case("W10a", "W10", "IG 50 steps, image 3x64x64 + table 20 features + per-sample argument, 16 samples",
                 model, impls, check=agree("captum" if have("captum") else "attrkit", TOL, flat_values),
                 targets=targets if have("captum") else [],
                 notes=[] if have("captum") else ["captum is not installed: no peer row"])]
