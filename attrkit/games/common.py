"""What every estimator shares: building the game from ``explain``'s options and turning player values into a
``Result`` (values spread back onto the input or layer shape, ``info["player_values"]`` and error figures)."""
from __future__ import annotations

import functools

import math

import torch

from ..core.problem import Problem, Result
from ..core.tokens import value_dtype
from .game import Game

SPREADS = ("value", "share", "paint")   # "paint" is the older name of "value"


def make_game(problem: Problem, players=None, masker=None, baseline=None, all_classes: bool = False,
              cache: bool = True, head_only: bool | None = None, local: bool | None = None) -> Game:
    return Game(problem, players=players, masker=masker, baseline=baseline, all_classes=all_classes, cache=cache,
                head_only=head_only, local=local)


def generator(problem: Problem) -> torch.Generator:
    """A fresh generator for one sample. Every sample starts from the same seed, so a batch gives the same
    numbers as explaining each sample alone (and any chunk size gives the same numbers)."""
    return torch.Generator().manual_seed(0 if problem.seed is None else int(problem.seed))


def check_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def check_tolerance(tolerance) -> float | None:
    if tolerance is None:
        return None
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0:
        raise ValueError(f"tolerance must be a positive number (largest std error / spread of values), got {tolerance!r}")
    return float(tolerance)


def check_spread(spread: str) -> bool:
    """``spread=`` of the game estimators: how a player's value is put on its elements.

    "value" (default, as every peer paints): each element shows its player's value, so a map reads in the
    player's own units (a player worth 0.24 is drawn as 0.24); "share": each element gets value / the player's
    element count, so ``values.sum()`` equals the sum of the player values (efficiency on the map).
    "paint" is accepted as the older name of "value". Returns True for "share"."""
    if spread not in SPREADS:
        raise ValueError(f"spread must be 'value' (each element shows its player's value, the default) or 'share' "
                         f"(each element gets its player's value / player size, so values sum to the player values), "
                         f"got {spread!r}")
    return spread == "share"


def subsets_of_size(l: int, s: int) -> torch.Tensor:
    """All coalitions of ``s`` out of ``l`` players, ``[C(l, s), l]`` bool."""
    import itertools
    if s == 0:
        return torch.zeros(1, l, dtype=torch.bool)
    idx = torch.tensor(list(itertools.combinations(range(l), s)), dtype=torch.long).view(-1, s)
    return torch.zeros(idx.shape[0], l, dtype=torch.bool).scatter_(1, idx, True)


@functools.lru_cache(maxsize=4)
def all_coalitions(l: int) -> torch.Tensor:
    """All ``2^l`` coalitions ``[2^l, l]`` bool; row ``c`` has player ``j`` iff bit ``j`` of ``c`` is set.
    Cached (the same read-only table for every call with this ``l``: do not modify it in place)."""
    codes = torch.arange(1 << l, dtype=torch.int64)
    return ((codes.unsqueeze(1) >> torch.arange(l)) & 1).bool()


def pad(z: torch.Tensor, width: int) -> torch.Tensor:
    """Coalitions of ``l`` players padded to ``width`` columns (extra columns present; no label uses them)."""
    if z.shape[1] == width:
        return z
    return torch.cat([z, torch.ones(z.shape[0], width - z.shape[1], dtype=torch.bool)], 1)


def finish(game: Game, phi: torch.Tensor, info: dict, share: bool = True, v_full: torch.Tensor | None = None,
           v_empty: torch.Tensor | None = None) -> Result:
    """``phi`` ``[N, L, K]`` player values (zero past a sample's player count) -> ``Result``."""
    n = game.n
    col = game.target_column()
    phi_t = phi[torch.arange(n), :, col]                                     # [N, L]
    base = game.base
    dtype = value_dtype(base, getattr(game.problem.outputs, 'dtype', None))      # integer (token) inputs: float
    values = game.players.spread(phi_t.to(base.device), tuple(base.shape[1:]), share=share).to(dtype)
    out = {"player_values": phi_t, "n_players": game.n_players.clone(), "masker": game.masker.name,
           "spread": "share" if share else "value"}
    if not share and _same_over_channels(game.players.labels, base):
        out["channels"] = "same"      # each channel holds the player's value: heatmap() shows it once (mean)
    if v_full is not None:
        out["full_value"] = v_full[torch.arange(n), col]
    if v_empty is not None:
        out["base_value"] = v_empty[torch.arange(n), col]
    if game.all_classes:
        out["player_values_all"] = phi.permute(0, 2, 1).contiguous()        # [N, K, L]
    if game.at_layer:
        out["head_only"] = bool(game.head_only)
        if getattr(game, "token_grid", None):
            out["token_grid"] = game.token_grid
        if not game.head_only and game.split_reason:
            out["split_note"] = game.split_reason
    if game.players.relabelled:
        out["player_ids"] = game.players.ids
    out.update(game.local_info())
    out.update(info)
    out["n_evals"] = game.n_evals
    ref = game.references
    baseline = ref[:, 0].expand((n,) + tuple(base.shape[1:])) if game.reps == 1 else None
    return Result(values=values, info=out, baseline=baseline, players=game.players.display())


def _same_over_channels(labels: torch.Tensor, base: torch.Tensor) -> bool:
    """True when players span every channel of an image-like input (labels of size 1 along dim 1)."""
    return base.dim() >= 3 and labels.dim() == base.dim() and labels.shape[1] == 1 and base.shape[1] > 1


def _bytes(b: float) -> str:
    if b >= 1 << 50:
        return f"{b:.1e} bytes"
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= size:
            return f"{b / size:,.1f} {unit}"
    return f"{int(b)} bytes"


def exact_cost(ls: list[int], k: int, reps: int, block: int) -> tuple[int, int]:
    """Model evaluations and peak bytes of exact Shapley values for samples with ``ls`` players and ``K = k``
    values per coalition: every coalition is evaluated (``reps`` rows each); one sample's value table
    (``2^l x K`` float64), its working copies (half-table differences, weights, coalition sizes) and one block
    of coalitions (``block x l`` bits) are held at a time."""
    top = max(ls) if ls else 0
    evals = sum(1 << l for l in ls) * reps
    memory = (1 << top) * (8 * k * 2 + 8 + 8) + min(block, 1 << top) * (top + 1) * 9
    return evals, memory


def refuse_exact(ls: list[int], max_players: int, reps: int, k: int, memory_limit: int, block: int) -> None:
    """Refuse, before anything is allocated, exact Shapley values that exceed ``max_players`` or whose tables
    exceed ``memory_limit`` bytes; the sentence states the model evaluations and the memory it would take."""
    l = max(ls) if ls else 0
    evals, memory = exact_cost(ls, k, reps, block)
    extra = f" (x {reps} background rows)" if reps > 1 else ""
    cost = (f"exact Shapley values of {l} players need all 2^{l} coalitions: {evals:,} model evaluations for the "
            f"batch{extra} and about {_bytes(memory)} of memory for the coalition values")
    ways = ("Use method='kernel_shap' or 'shapley_sampling' (sampled, with standard errors and tolerance=) or fewer "
            "players (e.g. ak.grid(x, 4) or ak.superpixels(x, 16))")
    if l > max_players:
        raise ValueError(f"{cost} (max_players={max_players}). {ways}, or raise max_players if you can afford it")
    if l > 62:
        raise ValueError(f"{cost}: more than 62 players cannot be enumerated at all. {ways}")
    if memory > memory_limit:
        raise ValueError(f"{cost}, more than the memory budget max_memory={_bytes(memory_limit)}. {ways}, or raise "
                         f"max_memory (bytes) if you can afford it")


def log_binom(l: int, s: int) -> float:
    return math.lgamma(l + 1) - math.lgamma(s + 1) - math.lgamma(l - s + 1)
