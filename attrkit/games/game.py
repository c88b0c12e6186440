"""``Game``: the coalition game ``v(S) = f_target(m_{x,h,r}(S))`` of the thesis (section 2.4), evaluated for a
``[B, width]`` boolean coalition matrix at a time.

The game owns everything estimators should not care about: the players, the masker, the layer split (a game
at a layer masks the activation and runs only the head), chunking under the memory budget
(``problem.chunk(grad=False, coalitions=True)``, under ``torch.inference_mode``), a cache of coalitions already
evaluated, the count of model rows run (``n_evals``), values for all output classes from the same forward passes
(``all_classes=True``), a progress bar on long runs, receptive-field evaluation of image games (``local``,
:mod:`attrkit.games.local`: a CNN's local prefix runs once per local pattern, not per coalition), and the
estimator's ``Result`` (``result``).
"""
from __future__ import annotations

import sys

import torch

from ..progress import bar as progress_bar
from ..core.modules import eval_mode
from ..core.problem import Problem, Result, build_problem
from ..core.tokens import value_dtype
from .cache import CoalitionCache
from .local import LocalPlanner
from .maskers import as_masker
from .options import GameOptions
from .players import as_players
from ..core.split import split_at_layer

PROGRESS_MIN_ROWS = 512
FLUSH_BYTES = 64 << 20           # game values held on the device before one copy to the CPU
LOCAL_MIN_ROWS = 256              # fewer coalitions per call never pay for a receptive-field plan


class Game:
    """The coalition game of ``problem`` over the players of ``options`` (a :class:`GameOptions`).

    ``game(z, rows)`` -> ``[B, K]`` float64 values for coalitions ``z`` (``[B, L]`` bool, ``L`` = most players
    of any sample; columns past a sample's own count are ignored) of samples ``rows`` (``[B]``). ``K`` is 1 (the
    target) or, with ``all_classes=True``, every output of the model. ``game.result(...)`` turns player values into
    the method's ``Result``. ``Game(model, x, players, masker, target=, layer=, ...)`` builds the ``Problem``
    first (:func:`attrkit.core.problem.build_problem`, as ``ak.explain`` does).

    >>> import torch
    >>> g = Game(torch.nn.Linear(4, 1), torch.ones(1, 4))          # players: one per feature, masker zeros
    >>> v = g(torch.tensor([[True, True, True, True], [False] * 4]), torch.tensor([0, 0]))
    >>> tuple(v.shape), g.n_evals
    ((2, 1), 2)
    """

    def __init__(self, problem: Problem, options: GameOptions | None = None, *args, cache: bool = True, **kw):
        self._own_model = not isinstance(problem, Problem)
        if self._own_model:                      # Game(model, x, players, masker, ...)
            problem, options = _problem_and_options(problem, options, *args, **kw)
        elif args or kw:
            raise TypeError("Game(problem, options): pass the game options as one GameOptions")
        options = GameOptions() if options is None else options
        self.problem, self.options = problem, options
        players, masker, baseline = options.players, options.masker, options.baseline
        self.at_layer = problem.layer is not None
        if self.at_layer:
            with eval_mode(problem.model, warn=False) if self._own_model else _null():
                split = split_at_layer(problem, options.head_only)
            self.base, self._run, self.head_only, self.chunk = split.activation, split.run, split.head_only, split.chunk
            self.split_reason = split.reason
            self._cl = split.head_only and _has_conv2d(split.head) and self.base.dim() == 4
        else:
            self.base = problem.inputs
            self._run = lambda inp, rows: problem.forward(inp, rows)
            self.head_only, self.chunk, self.split_reason = None, problem.chunk(grad=False, coalitions=True), ""
            self._cl = self.base.dim() == 4 and _has_conv2d(problem.model)
        self.token_grid = None
        if self.at_layer and (players is None or isinstance(players, str)):     # token / channels-last layers
            from .token_players import layer_token_players
            tok = layer_token_players(problem, self.base, players)
            if tok is not None:
                players, self.token_grid = tok
        if problem.layout is not None and not self.at_layer:     # several inputs: per-input players and masker
            players, masker, baseline = _per_input(problem, players, masker, baseline)
        self.players = as_players(players, self.base, at_layer=self.at_layer)
        self.n_players = self.players.n              # players per sample [N]
        self.max_players = self.players.columns      # coalition columns: the most players of any sample (plus one
        self.masker = as_masker(masker, baseline, self.base)               # for positions that are no player)
        self.references = self.masker.references(self.base, self.players, problem.seed)   # [N|1, R, ...]
        self.reps = int(self.references.shape[1])
        if options.all_classes and (problem.target.is_callable or problem.outputs is None
                                    or problem.outputs.dim() != 2):
            raise ValueError("all_classes=True needs a model with outputs [N, classes] and an index target "
                             "(not a callable target)")
        self.all_classes, self.local = bool(options.all_classes), options.local
        self._cache = CoalitionCache() if cache else None
        self._planner = None
        self.n_evals = 0

    # ------------------------------------------------------------------ sizes
    @property
    def n(self) -> int:
        return int(self.base.shape[0])

    @property
    def n_values(self) -> int:
        """``K``: 1 (the target) or the number of output classes."""
        return int(self.problem.outputs.shape[1]) if self.all_classes else 1

    def target_column(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Index of the target among the ``K`` values for each sample (all zeros unless ``all_classes``)."""
        rows = torch.arange(self.n) if rows is None else rows
        if not self.all_classes:
            return torch.zeros(len(rows), dtype=torch.long)
        cls = self.problem.target.classes
        if cls is None:
            return torch.zeros(len(rows), dtype=torch.long)
        return cls.cpu()[rows.cpu()]

    # ------------------------------------------------------------------ evaluation
    def __call__(self, z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Values ``[B, K]`` (float64) of coalitions ``z`` ``[B, L]`` for samples ``rows`` ``[B]``."""
        z, rows = self._check(z, rows)
        if z.shape[0] == 0:
            return torch.zeros(0, self.n_values, dtype=torch.float64)
        if self._cache is None:
            return self._evaluate(z, rows)
        return self._cache.values(z, rows, self._evaluate)

    def evaluate_masks(self, keep: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Values ``[B, K]`` for arbitrary keep-masks ``[B, ...]`` (broadcast to one sample of the input or the
        layer activation: True keeps ``x``, False takes the reference), e.g. occlusion windows. Not cached."""
        return self._run_masks(lambda s, e: keep[s:e], rows, keep.shape[0])

    def full(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``v(all players)`` ``[B, K]``."""
        rows = torch.arange(self.n) if rows is None else rows
        return self(torch.ones(len(rows), self.max_players, dtype=torch.bool), rows)

    def empty(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``v(no player)`` ``[B, K]``."""
        rows = torch.arange(self.n) if rows is None else rows
        return self(torch.zeros(len(rows), self.max_players, dtype=torch.bool), rows)

    def ends(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(v(all players), v(no player))`` of every sample, ``[N, K]`` each."""
        return self.full(), self.empty()

    def within_budget(self, groups: list[torch.Tensor], row: int, budget: int, seen: set) -> tuple[int, int]:
        """Accept coalition groups (``[m, L]`` each, e.g. a permutation pair's prefixes) in order while the
        distinct coalitions not yet evaluated (nor in ``seen``) stay within ``budget``; returns
        ``(groups accepted, evaluations they will cost)`` and adds their keys to ``seen``. Lets sampled
        estimators spend a budget of model evaluations, repeats being free (cached)."""
        if not groups:
            return 0, 0
        sizes = [g.shape[0] for g in groups]
        z, rows = self._check(torch.cat(groups), torch.full((sum(sizes),), row, dtype=torch.long))
        cache = self._cache if self._cache is not None else CoalitionCache()
        return cache.within_budget(z, rows, sizes, budget, seen)

    def result(self, info: dict, phi: torch.Tensor | None = None, *, values: torch.Tensor | None = None,
               v_full: torch.Tensor | None = None, v_empty: torch.Tensor | None = None) -> Result:
        """The estimator's ``Result`` from player values ``phi`` ``[N, L, K]`` (zero past a sample's player
        count; spread on the input or layer by ``options.spread``) or from per-element ``values``
        ``[N, K, ...]`` (occlusion): the target's column, ``info`` plus what the game knows (masker, player
        values, ``v(all)`` / ``v(none)``, the layer split, the receptive-field plans, ``n_evals``)."""
        n, idx, col, base = self.n, torch.arange(self.n), self.target_column(), self.base
        shape = tuple(base.shape[1:])
        out, players = {}, None
        if phi is not None:
            phi_t = phi[idx, :, col]                                                     # [N, L]
            share = self.options.share
            values = self.players.spread(phi_t.to(base.device), shape, share=share)
            out = {"player_values": phi_t, "n_players": self.n_players.clone(), "masker": self.masker.name,
                   "spread": "share" if share else "value"}
            if not share and _same_over_channels(self.players.labels, base):
                out["channels"] = "same"   # each channel holds the player's value: heatmap() shows it once (mean)
            players = self.players.display()
        else:
            out["masker"] = self.masker.name
            values, all_values = values[idx, col].to(base.device).reshape((n,) + shape), values
        if v_full is not None:
            out["full_value"] = v_full[idx, col]
        if v_empty is not None:
            out["base_value"] = v_empty[idx, col]
        if self.all_classes:
            out["player_values_all" if phi is not None else "values_all"] = \
                phi.permute(0, 2, 1).contiguous() if phi is not None else all_values     # [N, K, L] / [N, K, ...]
        if self.at_layer:
            out["head_only"] = bool(self.head_only)
            if self.token_grid:
                out["token_grid"] = self.token_grid
            if not self.head_only and self.split_reason:
                out["split_note"] = self.split_reason
        if phi is not None and self.players.relabelled:
            out["player_ids"] = self.players.ids
        out.update(self.local_info())
        out.update(info)
        out["n_evals"] = self.n_evals
        dtype = value_dtype(base, getattr(self.problem.outputs, "dtype", None))   # integer (token) inputs: float
        baseline = self.references[:, 0].expand((n,) + shape) if self.reps == 1 else None
        return Result(values=values.to(dtype), info=out, baseline=baseline, players=players)

    # ------------------------------------------------------------------ internals
    def _check(self, z, rows):
        if not isinstance(z, torch.Tensor) or z.dim() != 2:
            raise ValueError(f"coalitions must be a [B, L] boolean tensor, got "
                             f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}")
        rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1).cpu()
        if rows.numel() != z.shape[0]:
            raise ValueError(f"rows has {rows.numel()} entries for {z.shape[0]} coalitions")
        if rows.numel() and (rows.min() < 0 or rows.max() >= self.n):
            raise ValueError(f"rows must index samples 0..{self.n - 1}")
        L = self.max_players
        if z.shape[1] < L:
            raise ValueError(f"coalitions have {z.shape[1]} columns; this game has up to {L} players")
        z = z[:, :L].to(torch.bool).cpu()
        if bool((self.players.n < L).any()):   # canonical form: columns past a sample's players count as present
            z = z | (torch.arange(L).unsqueeze(0) >= self.players.n.cpu()[rows].unsqueeze(1))
        return z, rows

    def _evaluate(self, z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        dev = self.base.device
        out = torch.empty(z.shape[0], self.n_values, dtype=torch.float64)
        rest = torch.ones(z.shape[0], dtype=torch.bool)
        for r, count in self._local_counts(z, rows).items():   # one sample at a time: one plan's table at once
            with self._model_mode():
                plan = self._planner.plan(r, count, self.local is True)
            if plan is None:
                continue
            sel = (rows == r).nonzero().flatten()
            zd = z[sel].to(dev)
            rr = torch.full((len(sel),), r, dtype=torch.long, device=dev)
            out[sel] = self._loop(lambda s, e: (plan.run(zd[s:e]), rr[s:e]), len(sel), plan.chunk)
            rest[sel] = False
        idx = rest.nonzero().flatten()
        if len(idx):
            zd, rd = z[idx].to(dev), rows[idx].to(dev)
            out[idx] = self._run_masks(lambda s, e: self.players.masks(zd[s:e], rd[s:e]), rows[idx], len(idx))
        return out

    def _local_counts(self, z: torch.Tensor, rows: torch.Tensor) -> dict:
        """Coalitions per sample for which a receptive-field plan (:mod:`attrkit.games.local`) may be tried:
        calls with enough coalitions (``local=None``), every call (``True``), none (``False``)."""
        force = self.local is True
        if self.local is False or (z.shape[0] < LOCAL_MIN_ROWS and not force):
            return {}
        if self._planner is None and not self.at_layer:
            with self._model_mode():
                self._planner = LocalPlanner(self.problem, self.base, self.players, self.references, self.chunk)
        why = "it is a layer game (the head after the layer runs as it is)" if self.at_layer else \
            self._planner.why_not
        if why:
            if force:
                raise ValueError(f"local=True: no receptive-field evaluation here: {why}; use local=None")
            return {}
        counts = torch.bincount(rows, minlength=self.n)
        return {r: int(counts[r]) for r in counts.nonzero().flatten().tolist()}

    def local_info(self) -> dict:
        """What the receptive-field plans did (for ``Result.info``): cut, family rows per sample, and per sample
        decided ``local_choice``: the plan or the whole network, the multiply-add estimates and why."""
        built = [] if self._planner is None else self._planner.built
        out = {"local_choice": list(self._planner.choices.values())} if self._planner and self._planner.choices \
            else {}
        if built:
            out["local"] = {"cut": built[0][0], "family_rows": [m for _, m in built],
                            "prefix_evals": sum(m for _, m in built)}
        return out

    def _run_masks(self, mask_fn, rows: torch.Tensor, total: int) -> torch.Tensor:
        R = self.reps
        base, refs = self.base, self.references
        share_ref = refs.shape[0] == 1
        rows = rows.to(base.device)             # once: a copy per chunk would wait for the device each time

        def forward(s, e):
            r = rows[s:e]
            keep = mask_fn(s, e)
            x = base[r]
            ref = refs[0] if share_ref else refs[r]                     # [R, ...] or [b, R, ...]
            keep = keep.view(keep.shape[0], *([1] * (x.dim() - keep.dim())), *keep.shape[1:]) \
                if keep.dim() < x.dim() else keep
            if R == 1:
                return self._forward(torch.where(keep, x, ref[:, 0] if not share_ref else ref), r), r
            masked = torch.where(keep.unsqueeze(1), x.unsqueeze(1), ref if not share_ref else ref.unsqueeze(0))
            rr = r.repeat_interleave(R)
            return self._forward(masked.reshape((-1,) + tuple(x.shape[1:])), rr), rr

        return self._loop(forward, total, max(1, self.chunk // R))

    def _loop(self, forward, total: int, per_call: int) -> torch.Tensor:
        """Values ``[total, K]`` from ``forward(s, e) -> (outputs, rows)`` over chunks of ``per_call`` coalitions
        (``R`` output rows each, averaged), with the progress bar and the evaluation count."""
        R, K = self.reps, self.n_values
        out = torch.empty(total, K, dtype=torch.float64)
        bad = 0
        bar = progress_bar(total * R, "coalitions", self.problem.progress, show=self._show(total * R))
        try:
            with torch.inference_mode(), self._model_mode():
                held, done = [], 0      # values stay on the device until FLUSH_BYTES: no device sync per chunk
                for s in range(0, total, per_call):
                    e = min(total, s + per_call)
                    y, rr = forward(s, e)
                    v = y.reshape(y.shape[0], -1) if self.all_classes else self.problem.target(y, rr).view(-1, 1)
                    if v.is_floating_point():
                        bad = bad + (~torch.isfinite(v)).any(1).sum()          # a device tensor: no sync
                    held.append(v.to(torch.float64).view(e - s, R, K).mean(1))
                    if (e - done) * K * 8 >= FLUSH_BYTES or e == total:
                        done = _flush(held, out, done)
                    self.n_evals += (e - s) * R
                    bar.update((e - s) * R)
        finally:
            bar.close()
        bad = int(bad)
        if bad:
            what = "masked layer activations" if self.at_layer else "masked inputs"
            raise ValueError(
                f"the model's output is not finite (NaN or inf) on {bad} of {total * R} {what} (model evaluations); "
                "the attributions would be NaN or infinite. The model is undefined where the masker puts absent "
                "players (e.g. log or sqrt of 0 with masker='zeros'): choose a masker inside its domain (e.g. "
                "masker='mean', 'blur', a background sample, or a number where the model is finite), or make the "
                "model finite there (e.g. clamp before log)")
        return out

    def _model_mode(self):
        return eval_mode(self.problem.model, warn=False) if self._own_model else _null()

    def _forward(self, masked: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Run the model (or head) on masked inputs; images go in channels-last memory order when the network
        has 2-d convolutions (about 1.4x faster on CPUs; the values are the same). A model that cannot take
        channels-last input (e.g. ``x.view`` on it) gets the usual layout from then on."""
        if self._cl:
            try:
                return self._run(masked.contiguous(memory_format=torch.channels_last), rows)
            except RuntimeError:
                self._cl = False
        return self._run(masked, rows)

    def _show(self, rows: int) -> bool:
        p = self.problem.progress
        if p is not None:
            return bool(p)
        return rows >= PROGRESS_MIN_ROWS and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def _problem_and_options(model, x=None, players=None, masker=None, *, target=None, layer=None, baseline=None,
                         all_classes: bool = False, head_only: bool | None = None, local: bool | None = None,
                         batch_size: int | None = None, max_memory: int | None = None, seed: int | None = None,
                         progress: bool | None = None) -> tuple[Problem, GameOptions]:
    """``Game(model, x, ...)``: the problem (validated as ``ak.explain`` does) and the game options."""
    if x is None:
        raise TypeError("Game(model, x, ...) needs the inputs x")
    options = GameOptions(players=players, masker=masker, baseline=baseline, all_classes=all_classes,
                          head_only=head_only, local=local)
    return build_problem(model, x, target, layer=layer, batch_size=batch_size, max_memory=max_memory, seed=seed,
                         progress=progress), options


def _same_over_channels(labels: torch.Tensor, base: torch.Tensor) -> bool:
    """True when players span every channel of an image-like input (labels of size 1 along dim 1)."""
    return base.dim() >= 3 and labels.dim() == base.dim() and labels.shape[1] == 1 and base.shape[1] > 1


def _per_input(problem: Problem, players, masker, baseline):
    """Players and masker of several inputs (tuples, per-input names, ``Background`` of several inputs) in the
    packed form of ``problem.inputs`` (already packed ones pass through)."""
    from ..core.inputs import pack_reference
    from .packing import pack_players
    layout, flat = problem.layout, problem.inputs
    if not isinstance(players, str):
        players = pack_players(players, layout, flat)
    out = []
    for spec in (masker, baseline):
        if getattr(spec, "parts", None) is not None:
            spec = spec.packed(layout)
        out.append(pack_reference(spec, layout, flat, problem.seed, "masker"))
    return players, out[0], out[1]


def _flush(held: list, out: torch.Tensor, done: int) -> int:
    """Copy the value blocks ``held`` (on the device) into ``out[done:]`` at once; returns the rows done."""
    block = torch.cat(held).cpu()
    out[done:done + block.shape[0]] = block
    held.clear()
    return done + block.shape[0]


def _has_conv2d(model) -> bool:
    return isinstance(model, torch.nn.Module) and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

