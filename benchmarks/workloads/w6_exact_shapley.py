"""W6: exact Shapley values (all 2^l coalitions) against shap's ExactExplainer at the same batch size.

W6a: 12 SLIC superpixels of a 64x64 photo crop through ``bench_cnn`` (4,096 coalitions). W6c (full run only):
16 SLIC superpixels of another crop (65,536 coalitions, about 13 TFLOP of plain forward passes: minutes for
shap, so each library runs once, the checked run being the timed one). W6b: 16 players on ``bench_mlp``
(features 0-11 alone, 12-19 in pairs; 65,536 coalitions), where the libraries' own overhead shows. attrkit
evaluates image games with its receptive-field plan (:mod:`attrkit.games.local`; the convolutions run once per
local pattern of players, not once per coalition), which is where its speed comes from on W6a/W6c; the
evaluation counts in the table stay the coalitions. Both libraries get the same game: absent players set to 0,
the predicted class's output; shap gets
the coalition function through an ``Independent`` masker over a 0/1 vector, with ``batch_size`` equal to
attrkit's game chunk; ExactExplainer hands all 2^l coalitions to the function at once whatever its
``batch_size`` (4,096 rows: 6.5 GB peak; 2^17 rows would allocate 68 GB), so the function evaluates them in
chunks of that same size. Exact values must agree to 1e-4. Target (issue 4): time ratio <= 0.7.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import inputs
from ..case import Case, Check, Impl, agree, ratio_target, unavailable
from .common import attrkit_method, have
from .w4_occlusion import _chunk


class _Game:
    """``z [B, l] (0/1) -> model(x masked by z)[:, t]``: the coalition function given to shap."""

    def __init__(self, model, x, labels, t, chunk: int):
        self.model, self.x, self.t, self.chunk = model, x, int(t), int(chunk)
        self.l = int(labels.max()) + 1
        self.onehot = torch.nn.functional.one_hot(labels.reshape(-1), self.l).to(x.dtype)
        self.shape = labels.shape

    @torch.no_grad()
    def __call__(self, z) -> np.ndarray:
        z = torch.as_tensor(np.asarray(z), dtype=self.x.dtype)
        out = []
        for s in range(0, z.shape[0], self.chunk):       # shap hands over every coalition at once: chunk them
            zc = z[s:s + self.chunk]
            mask = (zc @ self.onehot.T).view((zc.shape[0],) + tuple(self.shape))
            if self.x.dim() == 4:
                mask = mask.unsqueeze(1)
            out.append(self.model(self.x * mask)[:, self.t].double())
        return torch.cat(out).numpy()


def _values(out) -> torch.Tensor:
    if hasattr(out, "info"):
        return out.info["player_values"][0].double()
    return torch.as_tensor(np.asarray(out.values)).reshape(-1).double()


def _case(cid, title, model, x, labels, cfg, repeats=None) -> Case:
    t = inputs.predicted(model, x)
    chunk = _chunk(model, x)
    game = _Game(model, x, labels, t, chunk)
    l = game.l

    def attrkit():
        import attrkit as ak
        return lambda: ak.explain(model, x, "shapley", target=t, players=labels[None], baseline="zeros",
                                  batch_size=chunk, progress=False)

    def shap_make():
        import shap
        masker = shap.maskers.Independent(np.zeros((1, l)), max_samples=1)
        explainer = shap.ExactExplainer(game, masker)
        return lambda: explainer(np.ones((1, l)), max_evals=(1 << l) + 1, batch_size=chunk, silent=True)

    impls = [Impl("attrkit", "attrkit", attrkit, {"batch_size": chunk, "players": l}, primary=True)]
    targets = []
    if have("shap"):
        impls.append(Impl("shap", "shap", shap_make, {"batch_size": chunk, "masker": "Independent(0/1 vector)"}))
        targets.append(ratio_target("exact Shapley time ratio attrkit/shap <= 0.7 at the same batch size",
                                    "attrkit", "shap", 0.7))
    return Case(cid, "W6", title, model, impls, check=agree("shap" if have("shap") else "attrkit", 1e-4, _values),
                targets=targets, repeats=repeats, memory=repeats is None)


def cases(cfg) -> list[Case]:
    why = attrkit_method("shapley")
    if why:
        return [unavailable("W6", "W6", "Exact Shapley, 12 and 16 players", why)]
    cnn = inputs.model("bench_cnn")
    x = inputs.crops(2, 64)[1:2]
    seg = inputs.superpixels(x, 12)
    mlp = inputs.model("bench_mlp")
    row = inputs.tabular(1, 20)
    groups = torch.tensor(list(range(12)) + [12, 12, 13, 13, 14, 14, 15, 15])
    out = [_case("W6a", f"exact Shapley, {int(seg.max()) + 1} SLIC superpixels, bench_cnn, 1 x 3x64x64",
                 cnn, x, seg, cfg),
           _case("W6b", "exact Shapley, 16 players, bench_mlp, 1 x 20", mlp, row, groups, cfg)]
    out.append(_resnet_case(cfg))
    if not cfg.quick:
        x16 = inputs.crops(1, 64)          # (SLIC gives 17 segments on W6a's crop when asked for 16)
        seg16 = inputs.superpixels(x16, 16)
        out.append(_case("W6c", f"exact Shapley, {int(seg16.max()) + 1} SLIC superpixels, bench_cnn, 1 x 3x64x64 "
                                "(one run each)", cnn, x16, seg16, cfg, repeats=0))
    return out


def _resnet_case(cfg) -> Case:
    """W6d (issue 19): exact Shapley, 12 SLIC superpixels of chelsea at 112x112 through a ResNet-18
    (``benchmarks.resnet``, 10 outputs; ``--quick``: width 16), attrkit with its receptive-field plan against
    attrkit running the whole network per coalition (``local=False``), one run each (the checked run is the
    timed one). Target: the plan >= 3x faster, values equal to 1e-5.

    Why 3x is out of reach here for any exact evaluation (measured on this case's network, width 64, by the input
    gradient's support of each position): every position of layer3 (7x7) and layer4 (4x4) depends on all 12
    players (receptive fields of 211 and 435 px on a 112 px image), so those stages, 49 % of the network's
    485 M multiply-adds per row, must run for each of the 4,096 coalitions: the speed-up is at most 2.05x even
    if everything before layer3 were free, about 1.9x with perfect memoisation of the earlier stages (positions
    after layer1 see 2-8 players, after layer2 4-12)."""
    from ..resnet import resnet18
    width = 16 if cfg.quick else 64
    model = resnet18(width=width, classes=10)
    x = inputs.chelsea(112)
    seg = inputs.superpixels(x, 12)
    t = inputs.predicted(model, x)
    chunk = _chunk(model, x)
    l = int(seg.max()) + 1
    info = {}

    def run(local):
        def make():
            import attrkit as ak

            def go():
                a = ak.explain(model, x, "shapley", target=t, players=seg[None], baseline="zeros",
                               batch_size=chunk, progress=False, local=local)
                if local is None:
                    info["local_choice"] = a.info.get("local_choice")
                return a
            return go
        return make

    impls = [Impl("attrkit", "attrkit (plan)", run(None), {"batch_size": chunk, "players": l, "local": None},
                  primary=True),
             Impl("attrkit", "attrkit whole network", run(False), {"batch_size": chunk, "local": False})]
    target = ratio_target("exact Shapley ResNet-18: plan >= 3x faster than the whole network per coalition "
                          "(time ratio whole / plan >= 3)", "attrkit whole network", "attrkit (plan)", 3.0, kind="min")
    abs_check = lambda outs: {k: Check(ok, err, 1e-5, "max abs difference to the whole network's values")
                              for k, (ok, err) in _abs(outs).items()}

    def _abs(outs):
        ref = _values(outs["attrkit whole network"])
        res = {}
        for k, out in outs.items():
            err = float((_values(out) - ref).abs().max())
            res[k] = (err <= 1e-5, err)
        return res

    return Case("W6d", "W6", f"exact Shapley, {l} SLIC superpixels, ResNet-18 (width {width}), 1 x 3x112x112: "
                "receptive-field plan vs the whole network (one run each)", model, impls, check=abs_check,
                targets=[target], repeats=0, memory=False,
                notes=["layer3/layer4 positions all see the 12 players: 49 % of the multiply-adds run per coalition "
                       "whatever the plan, so the exact speed-up is bounded by about 2x (see the case docstring)"], finalize=lambda: {"plan_choice": dict(info)})
