"""W7: the thesis' layer trick. Shapley values by antithetic permutation sampling (``shapley_sampling``,
same budget) over 49 players either way, on chelsea 224x224 through ``vgg16_quarter``:

- layer cells: the 7x7 cells of the last convolutional block's output (``features.30``, 128 x 7 x 7; all
  channels of a cell are one player); the masked activation goes through the rest of the network only;
- pixel grid: a 7x7 grid of 32x32-pixel squares of the input, each masked input through the whole network
  (``local=False``: the thesis' baseline, 19 minutes against 16 s there). A third row shows the pixel grid
  with attrkit's receptive-field evaluation (the default, :mod:`attrkit.games.local`): same values, faster.

No peer offers the layer game. Checks: efficiency (the values sum to v(all) - v(none)) for both; the layer
game split off with torch.fx gives the same values as a full forward pass with the layer's output replaced
(``head_only=False``, run once, untimed). Target (issue 4): speed-up >= 30x.
"""
from __future__ import annotations

import torch

from .. import inputs
from ..case import Case, Check, Impl, rel_error, ratio_target, unavailable
from .common import attrkit_method, players

LAYER = "features.30"
WHOLE = "attrkit pixel grid, whole network"
PLAN = "attrkit pixel grid, receptive-field plan"


def cases(cfg) -> list[Case]:
    why = attrkit_method("shapley_sampling")
    if why:
        return [unavailable("W7", "W7", "Layer-cell Shapley vs pixel grid", why)]
    import attrkit as ak
    model = inputs.model("vgg16_quarter")
    x = inputs.chelsea(224)
    t = inputs.predicted(model, x)
    budget = 200 if cfg.quick else 500
    grid = players("grid")(x, 7)

    def run(**opts):
        return lambda: (lambda: ak.explain(model, x, "shapley_sampling", target=t, baseline="zeros",
                                           n_samples=budget, seed=0, progress=False, **opts))

    def check(outs):
        res = {}
        for label, a in outs.items():
            pv = a.info["player_values"][0].double()
            delta = float(a.info["full_value"][0] - a.info["base_value"][0])
            gap = abs(float(pv.sum()) - delta) / max(abs(delta), 1e-12)
            res[label] = Check(gap <= 1e-4, gap, 1e-4, "efficiency: |sum - (v(all) - v(none))| / |v(all) - v(none)|")
        plain, fast = outs.get(WHOLE), outs.get(PLAN)
        if plain is not None and fast is not None:
            err = rel_error(fast.info["player_values"], plain.info["player_values"])
            eff = res[PLAN]
            res[PLAN] = Check(eff.ok and err <= 1e-4, err, 1e-4,
                              f"efficiency gap {eff.error:.2g}; difference to the whole network per coalition "
                              f"(cut {fast.info.get('local', {}).get('cut')})")
        split, hook = outs.get("attrkit layer cells"), outs.get("attrkit layer cells, hook")
        if split is not None and hook is not None:
            err = rel_error(split.info["player_values"], hook.info["player_values"])
            eff = res["attrkit layer cells"]
            head = split.info.get("head_only")
            res["attrkit layer cells"] = Check(eff.ok and err <= 1e-4 and head is True, err, 1e-4,
                                               f"efficiency gap {eff.error:.2g}; difference to the full network with "
                                               f"a replacing hook; head_only={head}")
        return res

    impls = [Impl("attrkit", "attrkit layer cells", run(layer=LAYER),
                  {"players": "7x7 cells of features.30", "n_samples": budget}, primary=True),
             Impl("attrkit", WHOLE, run(players=grid, local=False),
                  {"players": "7x7 grid of 32x32 pixels", "n_samples": budget, "local": False}),
             Impl("attrkit", PLAN, run(players=grid),
                  {"players": "7x7 grid of 32x32 pixels", "n_samples": budget, "local": "auto"}),
             Impl("attrkit", "attrkit layer cells, hook", run(layer=LAYER, head_only=False),
                  {"players": "7x7 cells of features.30", "head_only": False}, timed=False)]
    return [Case("W7", "W7", f"Shapley sampling ({budget} evaluations), 49 players, vgg16_quarter, chelsea 224x224",
                 model, impls, check=check,
                 targets=[ratio_target("layer-cell Shapley >= 30x faster than the pixel grid (whole network)",
                                       WHOLE, "attrkit layer cells", 30.0, kind="min")],
                 notes=["the speed-up does not depend much on the sample budget: both games evaluate the same "
                        "number of coalitions",
                        "the receptive-field row runs the first convolutions once per local pattern instead of "
                        "once per coalition; the layer trick stays the faster way"])]
