"""W14: the layer trick on patches (issue 16). KernelSHAP with the same budget over 64 players either way:

- patch tokens: the 64 patch tokens after a block (the class token is no player and keeps its value); only the
  part of the model after the block runs (``info["head_only"]``);
- pixel grid: an 8x8 grid of 8x8-pixel squares of the 64x64 input, each masked input through the whole model
  (attrkit's default evaluation).

W14a: the zoo's ``shapes_vit`` (SmallCNN stem, 2 blocks; tokens after ``blocks.0``; the tokens after the last
block do not reach the class-token head). W14b: a plain 4-block ``SmallViT`` (seeded weights; tokens after
``blocks.1``, "after block 2", the setting docs/transformers.md quotes). Checks (before timing): both games
evaluate the same number of coalitions; efficiency (values sum to v(all) - v(none)) to 1e-4; the split token game
equals the full model with the block's output replaced (``head_only=False``, untimed) to 1e-4. Target: the token
game >= 10x faster (time ratio <= 0.1).
"""
from __future__ import annotations

import torch

from ..case import Case, Check, Impl, rel_error, ratio_target, unavailable
from .common import attrkit_method, players

TOL = 1e-4
TOKENS, PIXELS, HOOK = "attrkit patch tokens", "attrkit pixel grid", "attrkit patch tokens, hook"


def _check(outs):
    res = {}
    for label, a in outs.items():
        pv = a.info["player_values"].double()
        delta = (a.info["full_value"] - a.info["base_value"]).double()
        gap = float(((pv.sum(1) - delta).abs() / delta.abs().clamp_min(1e-12)).max())
        res[label] = Check(gap <= TOL, gap, TOL, "efficiency: max |sum - (v(all) - v(none))| / |v(all) - v(none)|")
    tok, pix, hook = outs[TOKENS], outs[PIXELS], outs[HOOK]
    evals = (tok.info.get("n_evals"), pix.info.get("n_evals"))
    if evals[0] != evals[1]:
        res[TOKENS] = Check(False, None, None, f"unequal evaluations: {evals[0]} vs {evals[1]}")
        return res
    err = rel_error(tok.info["player_values"], hook.info["player_values"])
    eff, head = res[TOKENS], tok.info.get("head_only")
    res[TOKENS] = Check(eff.ok and err <= TOL and head is True, err, TOL,
                        f"efficiency gap {eff.error:.2g}; difference to the full model with a replacing hook; "
                        f"head_only={head}; {evals[0]} evaluations each")
    return res


def _case(cid, title, model, x, layer, budget, notes) -> Case:
    import attrkit as ak
    with torch.no_grad():
        t = model(x).argmax(1)
    grid = players("grid")(x, 8)

    def run(**opts):
        return lambda: (lambda: ak.explain(model, x, "kernel_shap", target=t, n_samples=budget, seed=0,
                                           progress=False, **opts))
    impls = [Impl("attrkit", TOKENS, run(layer=layer), {"players": f"64 patch tokens after {layer}",
                                                        "n_samples": budget}, primary=True),
             Impl("attrkit", PIXELS, run(players=grid), {"players": "8x8 grid of 8x8 pixels", "n_samples": budget}),
             Impl("attrkit", HOOK, run(layer=layer, head_only=False), {"head_only": False}, timed=False)]
    return Case(cid, "W14", title, model, impls, check=_check, notes=notes,
                targets=[ratio_target("patch-token Shapley >= 10x faster than the pixel grid (ratio <= 0.1)",
                                      TOKENS, PIXELS, 0.1)])


def cases(cfg) -> list[Case]:
    why = attrkit_method("kernel_shap")
    if why:
        return [unavailable("W14", "W14", "Patch-token Shapley vs pixel grid", why)]
    from attrkit import zoo
    from attrkit.models.vit import SmallViT
    budget, n = (256, 2) if cfg.quick else (512, 4)
    x = zoo.dataset("shapes_vit").x[-n:].contiguous()
    return [_case("W14a", f"KernelSHAP ({budget} samples), 64 players, shapes_vit, {n} x 3x64x64",
                  zoo.pretrained("shapes_vit").eval(), x, "blocks.0", budget,
                  ["block 1, the norm and the head run per coalition against the CNN stem, the patch embedding "
                   "and both blocks"]),
            _case("W14b", f"KernelSHAP ({budget} samples), 64 players, SmallViT 4 blocks, {n} x 3x64x64",
                  SmallViT().eval(), x, "blocks.1", budget,
                  ["seeded random weights: the cost, not the values, is the point; blocks 3-4, the norm and the "
                   "head run per coalition against all four blocks"])]
