"""Captum's ``Lime`` on attrkit's engine: Captum's sampling and similarity kernel, the model evaluated in
batches by attrkit, and a weighted least-squares surrogate per sample."""
from __future__ import annotations

import inspect

import torch

from ...core.problem import Result
from ...core.references import make_reference
from ._base import Attribution, as_tuple, baselines_for, feature_players, rows_per_call, spec


def exp_cosine_similarity(original, perturbed, width: float = 1.0) -> torch.Tensor:
    """Captum's default LIME kernel: ``exp(-d^2 / (2 width^2))`` with ``d`` the cosine distance between the
    flattened original and perturbed inputs (all inputs concatenated)."""
    a, b = original.reshape(-1).float(), perturbed.reshape(perturbed.shape[0], -1).float()
    cos = (b @ a) / (b.norm(dim=1) * a.norm()).clamp_min(1e-8)
    return torch.exp(-((1 - cos) ** 2) / (2 * width ** 2))


def weighted_least_squares(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Coefficients of ``y ~ b + z c`` weighted by ``w`` (sklearn ``LinearRegression(sample_weight=w)``: data
    centred by the weighted means, minimum-norm least squares)."""
    z, y, w = z.double(), y.double(), w.double()
    sw = w / w.sum()
    zc, yc = z - sw @ z, y - sw @ y
    r = w.sqrt()
    return torch.linalg.lstsq(zc * r[:, None], (yc * r)[:, None], driver="gelsd").solution[:, 0]


def weighted_lasso(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, alpha: float, max_sweeps: int = 10000,
                   tol: float = 1e-12) -> torch.Tensor:
    """Coefficients of sklearn's ``Lasso(alpha).fit(z, y, sample_weight=w)``: weights rescaled to sum to the
    number of rows, data centred by the weighted means, then ``min (1/2n) sum w_i (y_i - z_i c)^2 + alpha |c|_1``
    by cyclic coordinate descent (Friedman et al. 2010), run to convergence."""
    z, y, w = z.double(), y.double(), w.double()
    n = z.shape[0]
    sw = w * (n / w.sum())
    p = sw / sw.sum()
    r = sw.sqrt()
    x, res = (z - p @ z) * r[:, None], (y - p @ y) * r
    norms = (x ** 2).sum(0)
    coef = torch.zeros(z.shape[1], dtype=torch.float64)
    for _ in range(max_sweeps):
        step = 0.0
        for j in range(z.shape[1]):
            if norms[j] <= 0:
                continue
            old = float(coef[j])
            rho = float(x[:, j] @ res) + float(norms[j]) * old
            new = (abs(rho) - n * alpha) / float(norms[j]) if abs(rho) > n * alpha else 0.0
            new = new if rho >= 0 else -new
            if new != old:
                res -= x[:, j] * (new - old)
                coef[j] = new
                step = max(step, abs(new - old))
        if step < tol:
            break
    return coef


def _surrogate(problem, players, baseline, n_draws, perturb, similarity, structure, captum_kwargs, lasso_alpha):
    x, n = problem.inputs, problem.n
    ref = make_reference(baseline, x, seed=problem.seed)
    lab = torch.broadcast_to(torch.as_tensor(players).long().to(x.device), x.shape)
    lab = lab - lab.min()
    m = int(lab.max()) + 1
    zs, inputs = [], []
    for i in range(n):                            # Captum's draw order: all draws of sample 0, then sample 1 ...
        orig = structure(x[i:i + 1])
        gen = perturb(orig, num_interp_features=m, **captum_kwargs) if inspect.isgeneratorfunction(perturb) else None
        z = []
        for _ in range(n_draws):
            draw = next(gen) if gen is not None else perturb(orig, num_interp_features=m, **captum_kwargs)
            z.append(torch.as_tensor(draw).reshape(-1).to(x.device).bool())
        z = torch.stack(z)                                                     # [S, m]
        # keep torch's generator in step with Captum, which draws here for its DataLoader's seed and for the
        # initial weights of its surrogate (an nn.Linear(m, 1)), so the next sample's coalitions match
        torch.empty((), dtype=torch.int64).random_()
        torch.empty(1, m).uniform_()
        torch.empty(1).uniform_()
        keep = z[:, lab[i]]                                                    # [S, ...]
        inputs.append(torch.where(keep, x[i:i + 1], ref[i:i + 1]))
        zs.append(z)
    rows = torch.arange(n).repeat_interleave(n_draws)
    y = problem.evaluate(torch.cat(inputs), rows).to(torch.float64).view(n, n_draws)
    coefs = torch.zeros(n, m, dtype=torch.float64)
    for i in range(n):
        pert = inputs[i]
        if similarity is None:
            w = exp_cosine_similarity(x[i], pert)
        else:
            w = torch.stack([torch.as_tensor(similarity(structure(x[i:i + 1]), structure(pert[j:j + 1]),
                                                        zs[i][j:j + 1].long(), num_interp_features=m,
                                                        **captum_kwargs)).reshape(()) for j in range(n_draws)])
        z_i = zs[i].to(torch.float64).cpu()
        coefs[i] = weighted_least_squares(z_i, y[i].cpu(), w.cpu()) if lasso_alpha is None else \
            weighted_lasso(z_i, y[i].cpu(), w.cpu(), lasso_alpha)
    values = torch.gather(coefs.to(x.device), 1, lab.reshape(n, -1)).view(x.shape)
    return Result(values.to(x.dtype), {"n_evals": n * n_draws, "player_values": coefs.to(x.dtype)})


SURROGATE = spec("lime", _surrogate, family="game", layer="never")


def bernoulli_draw(original_inp, num_interp_features, **kwargs):
    """Captum's default LIME sampling: every feature present with probability 1/2 (torch's generator)."""
    return torch.bernoulli(torch.ones(1, num_interp_features) * 0.5).long()


class Lime(Attribution):
    """LIME (Ribeiro et al. 2016) as Captum computes it: ``n_samples`` coalitions drawn with torch's generator
    (each feature kept with probability 1/2, or ``perturb_func``), weighted by ``exp(-d^2 / 2)`` with ``d``
    the cosine distance between the original and perturbed inputs (or ``similarity_func``), and a linear
    surrogate per sample; the perturbed inputs are evaluated in batches by attrkit. With the same seed the
    numbers are Captum's.

    The surrogate is Captum's: by default ``SkLearnLasso(alpha=0.01)`` (weighted lasso, solved here by coordinate
    descent to convergence; sklearn is not needed), or weighted least squares for
    ``interpretable_model=SkLearnLinearRegression()``. The lasso shrinks every coefficient towards 0 and sets
    small ones to exactly 0; attrkit's native ``method="lime"`` fits unpenalised least squares.
    """

    def __init__(self, forward_func, interpretable_model=None, similarity_func=None, perturb_func=None):
        super().__init__(forward_func)
        name = type(interpretable_model).__name__
        if interpretable_model is None:
            self.lasso_alpha = 0.01                                  # Captum's default SkLearnLasso(alpha=0.01)
        elif name in ("SkLearnLinearRegression", "LinearRegression"):
            self.lasso_alpha = None
        elif name in ("SkLearnLasso", "Lasso"):
            kw = getattr(interpretable_model, "construct_kwargs", None) or {}
            self.lasso_alpha = float(kw.get("alpha", getattr(interpretable_model, "alpha", 1.0)))
        else:
            raise ValueError(f"interpretable_model {name} is not supported: the compat Lime fits Captum's "
                             "SkLearnLasso (the default) or SkLearnLinearRegression")
        self.similarity_func, self.perturb_func = similarity_func, perturb_func or bernoulli_draw

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None, feature_mask=None,
                  n_samples=50, perturbations_per_eval=1, return_input_shape=True, show_progress=False, **kwargs):
        xs, single = as_tuple(inputs)
        shapes = [tuple(x.shape[1:]) for x in xs]

        def structure(flat):                       # a packed row back into Captum's structure
            if len(xs) == 1:
                return flat if single else (flat,)
            parts, o = [], 0
            for s in shapes:
                k = int(torch.tensor(s).prod()) if s else 1
                parts.append(flat[:, o:o + k].reshape((flat.shape[0],) + s))
                o += k
            return tuple(parts)

        a, values = self._run(self.forward_func, inputs, SURROGATE, target=target,
                              additional_forward_args=additional_forward_args, show_progress=show_progress,
                              batch_size=rows_per_call(perturbations_per_eval, xs[0].shape[0]),
                              players=feature_players(feature_mask, xs), baseline=baselines_for(baselines, xs),
                              n_draws=int(n_samples), perturb=self.perturb_func, similarity=self.similarity_func,
                              structure=structure, captum_kwargs=dict(kwargs), lasso_alpha=self.lasso_alpha)
        return values if return_input_shape else a.info["player_values"]
