"""Mutation check: does the test suite notice a broken library? Not part of ``make test`` (``make mutations``).

    python tests/mutations.py [--list] [--only ID,ID] [--skip-baseline] [--keep]

Each mutation is one exact textual replacement in one library file (the pattern must occur exactly once: a stale
pattern fails loudly before anything runs). The repository is copied to a scratch directory (no .git, virtual
environments or caches); every mutation is applied there alone, the tests it names run with ``-x`` on one thread
(``OMP_NUM_THREADS=1``), the file is restored, and the table says which test caught it. A mutation caught only
by a crash before any test ran (collection error) counts as broken, not as caught. Exit status 1 when a mutation
survived, was broken, or the unmutated tests (the baseline, run first) fail.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    id: str
    path: str          # library file, relative to the repository root
    old: str           # must occur exactly once in the file
    new: str
    tests: tuple       # pytest node ids / files that must catch it
    what: str
    k: str = ""        # optional pytest -k expression (a slow file: only its tests that concern the mutation)


CAM, GRAD, CONTRACT = "tests/test_cam.py", "tests/test_gradients.py", "tests/test_contract.py"
ERR = "__import__('sys').exc_info()[0] is None"      # true only when no exception is propagating

MUTATIONS = [
    Mutation("hires_cam_is_grad_cam", "attrkit/cams/cam.py",
             'hires_cam = _cam("hires_cam", hires_cam_map,', 'hires_cam = _cam("hires_cam", grad_cam_map,',
             (CAM,), "HiResCAM registered with Grad-CAM's function"),
    Mutation("xgrad_cam_is_grad_cam", "attrkit/cams/cam.py",
             'xgrad_cam = _cam("xgrad_cam", xgrad_cam_map,', 'xgrad_cam = _cam("xgrad_cam", grad_cam_map,',
             (CAM,), "XGrad-CAM registered with Grad-CAM's function"),
    Mutation("grad_cam_pp_alpha", "attrkit/cams/cam.py",
             "aij = g2 / (2 * g2 + s * g3 + eps)", "aij = g2 / (2 * g2 + g3 + eps)",
             (CAM,), "Grad-CAM++'s alpha without the activation sum"),
    Mutation("eigen_cam_sign", "attrkit/cams/cam.py",
             "flip = proj.amin(dim=1).abs() > proj.amax(dim=1).abs()",
             "flip = proj.amin(dim=1).abs() < proj.amax(dim=1).abs()",
             (CAM,), "Eigen-CAM's sign rule reversed"),
    Mutation("ablation_cam_drop_sign", "attrkit/cams/cam_perturb.py",
             "w = (y.unsqueeze(1) - ablated) / denom", "w = (ablated - y.unsqueeze(1)) / denom",
             (CAM,), "Ablation-CAM's weights: score rise instead of drop"),
    Mutation("vargrad_std_err_one", "attrkit/gradients/noise.py",
             "se = ((m4 - values ** 2).clamp_min(0) / s).sqrt()", "se = torch.ones_like(values)",
             (GRAD,), "VarGrad's std_err replaced by 1.0", k="noise"),
    Mutation("smoothgrad_sigma_range", "attrkit/gradients/noise.py",
             "return noise_level * (flat.max(1).values - flat.min(1).values)",
             "return noise_level * flat.max(1).values",
             (GRAD, "tests/test_gradients_captum.py"), "SmoothGrad's noise scale: max instead of the value range",
             k="noise or smooth"),
    Mutation("trapezoid_end_weight", "attrkit/gradients/quadrature.py",
             "w[0] = w[-1] = 0.5 / (n - 1)", "w[0] = w[-1] = 1.0 / (n - 1)",
             (GRAD,), "a quadrature weight: the trapezoid's end points counted fully"),
    Mutation("riemann_middle_node", "attrkit/gradients/quadrature.py",
             '"riemann_middle": 0.5}', '"riemann_middle": 0.4}',
             (GRAD,), "a quadrature node: the middle Riemann rule off the middle (weights still sum to 1)"),
    Mutation("ig_baseline_ignored", "attrkit/gradients/methods.py",
             "problem.activation(x)) if at_layer else (ref, x)",
             "problem.activation(x)) if at_layer else (torch.zeros_like(x), x)",
             (GRAD,), "Integrated Gradients' path starts at zeros whatever the baseline"),
    Mutation("completeness_gap_formula", "attrkit/gradients/methods.py",
             "gap = (total - delta[rows]).abs()", "gap = (total - f_x[rows]).abs()",
             (CONTRACT,), "IG's completeness gap forgets f(baseline)"),
    Mutation("engine_chunk_drops_last_point", "attrkit/gradients/engine.py",
             "flat = torch.arange(start, min(total, start + step), device=samples.device)",
             "flat = torch.arange(start, min(total - 1, start + step), device=samples.device)",
             (CONTRACT,), "the gradient engine's chunking drops the last point"),
    Mutation("engine_tap_leaks_on_error", "attrkit/gradients/engine.py",
             "        if tap_ctx is not None:\n            tap_ctx.__exit__(None, None, None)",
             f"        if tap_ctx is not None and {ERR}:\n            tap_ctx.__exit__(None, None, None)",
             (CONTRACT,), "the layer hook stays when the model raises during a gradient method"),
    Mutation("composite_leaks_on_error", "attrkit/propagation/composites.py",
             "    def __exit__(self, *exc) -> None:\n        self._detach()",
             "    def __exit__(self, *exc) -> None:\n        exc[0] is None and self._detach()",
             (CONTRACT,), "rule hooks (LRP, DeepLIFT, guided) stay when the model raises"),
    Mutation("eval_mode_not_restored_on_error", "attrkit/core/modules.py",
             "        for m, flag in flags.items():\n            m.training = flag",
             f"        for m, flag in (flags.items() if {ERR} else ()):\n            m.training = flag",
             (CONTRACT,), "train mode not restored after an error"),
    Mutation("target_rows_ignored", "attrkit/core/targets.py",
             "cls = cls if rows is None else cls[rows.to(dev)]",
             "cls = cls if rows is None else cls[rows.to(dev) * 0]",
             (CONTRACT,), "target selection: every row takes the first sample's class"),
    Mutation("predicted_class_argmin", "attrkit/core/targets.py",
             "Target(outputs.argmax(dim=1)", "Target(outputs.argmin(dim=1)",
             (GRAD,), "target=None picks the least likely class"),
    Mutation("token_reference_id", "attrkit/core/tokens.py",
             "return torch.full_like(x, _check_id(spec, name))", "return torch.zeros_like(x)",
             ("tests/test_tokens.py",), "a token-id reference (baseline=5, pad_id=...) silently becomes id 0"),
    Mutation("kernel_shap_efficiency", "attrkit/games/kernel_shap.py",
             "phi = ab - a1 @ lam", "phi = ab",
             ("tests/test_games_shapley.py",), "KernelSHAP without its efficiency correction"),
    Mutation("kernel_strata_weights_unscaled", "attrkit/games/kernel_strata.py",
             "self.mass[c] / (2 * max(n, 1))", "self.mass[c] / 2",
             ("tests/test_games_kernel_design.py",), "stratified KernelSHAP weights ignore the pairs drawn per class"),
    Mutation("kernel_strata_no_fpc", "attrkit/games/kernel_strata.py",
             "fpc = 1.0 - n / self.population[c]", "fpc = 1.0",
             ("tests/test_games_kernel_design.py",), "KernelSHAP std errors without the finite-population correction"),
    Mutation("shapley_weights", "attrkit/games/shapley.py",
             "torch.lgamma(m - s) - math.lgamma(m + 1)", "torch.lgamma(m - s + 1) - math.lgamma(m + 1)",
             ("tests/test_games_shapley.py",), "exact Shapley with s! (m - s)! / m! weights"),
    Mutation("occlusion_window_short", "attrkit/games/ablation.py",
             "(j * s, min(size, j * s + k))", "(j * s, min(size, j * s + k - 1))",
             ("tests/test_games_estimators.py", "tests/test_games_peers.py"), "occlusion windows one element short",
             k="occlusion"),
    Mutation("occlusion_cone_short", "attrkit/games/cones.py",
             "b = np.minimum(hw[i], (shi[:, i] - 1 + p) // s + 1)", "b = np.minimum(hw[i], (shi[:, i] - 2 + p) // s + 1)",
             ("tests/test_occlusion_incremental.py",), "incremental occlusion: a window's cone one position short"),
    Mutation("shuffle_masker_ignores_players", "attrkit/games/maskers.py",
             "u = torch.rand(li.shape, generator=g, dtype=torch.float64).to(li.device) * 0.5",
             "u = torch.rand(li.shape, generator=g, dtype=torch.float64).to(li.device) * 1e6",
             ("tests/test_games_players.py",), "the shuffle masker permutes across players, not within each"),
    Mutation("masks_ignore_player_labels", "attrkit/games/players.py",
             "return torch.gather(z, 1, lab.reshape(b, -1)).view(lab.shape)",
             "return torch.gather(z, 1, torch.zeros_like(lab.reshape(b, -1))).view(lab.shape)",
             ("tests/test_games_shapley.py",), "every element follows player 0's presence"),
    Mutation("spread_rule_swapped", "attrkit/games/players.py",
             "        if share:\n            phi = phi / self.counts",
             "        if not share:\n            phi = phi / self.counts",
             ("tests/test_games_shapley.py", "tests/test_games_estimators.py"), "spread: value and share swapped",
             k="spread or test_games_shapley"),
    Mutation("lrp_stabiliser_sign", "attrkit/propagation/rules.py",
             "return z + ((z == 0).to(z) + z.sign()) * eps", "return z + eps",
             ("tests/test_propagation.py",), "the LRP stabiliser ignores the sign of z"),
    Mutation("guided_backprop_is_deconvnet", "attrkit/propagation/rules.py",
             "out = surrogate(output, output)        # a fresh tensor",
             "out = surrogate(output, inputs[0])        # a fresh tensor",
             ("tests/test_propagation.py",), "guided backpropagation forgets the forward ReLU mask"),
    Mutation("deeplift_rescale_without_reference", "attrkit/propagation/deeplift.py",
             "return fn(zd, *rest, **kw) - fn(zrd, *rest, **kw), zd - zrd",
             "return fn(zd, *rest, **kw), zd - zrd",
             ("tests/test_propagation.py",), "DeepLIFT's rescale multiplier forgets the reference output"),
    Mutation("faithfulness_correlation_sign", "attrkit/metrics/faithfulness.py",
             "drop = scorer.base().cpu().view(-1, 1) - vals", "drop = vals - scorer.base().cpu().view(-1, 1)",
             ("tests/test_metrics.py",), "a metric's sign: faithfulness correlation of the rise, not the drop"),
    Mutation("morf_lerf_sign", "attrkit/metrics/faithfulness.py",
             "diff = le.per_sample - mo.per_sample", "diff = mo.per_sample - le.per_sample",
             ("tests/test_metrics.py",), "a metric's sign: MoRF - LeRF instead of LeRF - MoRF"),
    Mutation("lime_kernel_without_sqrt", "attrkit/games/lime.py",
             "return torch.exp(-(d ** 2) / width ** 2).sqrt()", "return torch.exp(-(d ** 2) / width ** 2)",
             ("tests/test_games_peers.py", "tests/test_games_estimators.py"), "LIME's kernel without lime's sqrt",
             k="lime"),
    Mutation("lime_cosine_distance", "attrkit/games/lime.py",
             "d = 1.0 - torch.sqrt(k / m)", "d = 1.0 - k / m",
             ("tests/test_games_peers.py", "tests/test_games_estimators.py"), "LIME's cosine distance to the full "
             "coalition without the square root", k="lime"),
    Mutation("relevance_mass_abs", "attrkit/metrics/localisation.py",
             "pos = maps.clamp_min(0).reshape(n, -1)", "pos = maps.abs().reshape(n, -1)",
             ("tests/test_metrics.py",), "relevance mass counts negative relevance too"),
    Mutation("infidelity_sign", "attrkit/metrics/faithfulness.py",
             "raw = ((p - d) ** 2).mean(1)", "raw = ((p + d) ** 2).mean(1)",
             ("tests/test_metrics.py",), "infidelity compares I.F with the output rise, not the drop"),
    Mutation("game_chunk_targets_reversed", "attrkit/games/game.py",
             "self.problem.target(y, rr).view(-1, 1)", "self.problem.target(y, rr.flip(0)).view(-1, 1)",
             (CONTRACT,), "batching: a chunk of coalitions reads its samples' targets in reverse order"),
    Mutation("torchscript_declaration", "attrkit/registry.py",
             'props.setdefault("torchscript", family in ("gradient", "game"))',
             'props.setdefault("torchscript", family in ("gradient",))',
             (CONTRACT,), "the registry declares that game methods refuse TorchScript models (they accept them)"),
    Mutation("attn_lrp_accepts_torchscript", "attrkit/transformers/attnlrp.py",
             'require_hooks(model, "attn_lrp")', "None",
             (CONTRACT,), "AttnLRP runs on a TorchScript model, where its rules cannot be installed (a silently "
             "different map)", k="attn_lrp"),
]


def check_patterns(root: Path, muts) -> list[str]:
    problems = []
    for m in muts:
        text = (root / m.path).read_text()
        n = text.count(m.old)
        if n != 1:
            problems.append(f"{m.id}: pattern found {n} times in {m.path} (must be exactly once): {m.old!r}")
    return problems


def scratch_copy(root: Path) -> Path:
    dest = Path(tempfile.mkdtemp(prefix="attrkit-mutations-")) / "repo"
    skip = {".git", ".venv", ".venv-crosscheck", ".cache", "__pycache__", "demo-out", ".pytest_cache", "build"}
    shutil.copytree(root, dest, ignore=lambda d, names: [n for n in names if n in skip or n.endswith(".egg-info")])
    return dest


def run_tests(repo: Path, tests, env, k: str = "") -> tuple[int, str, float]:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider", *tests]
    cmd += ["-k", k] if k else []
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr, time.perf_counter() - t


def first_failure(out: str) -> str | None:
    m = re.search(r"^(?:FAILED|ERROR) (\S+)", out, re.M)
    return m.group(1) if m else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", action="store_true", help="print the mutations and exit")
    p.add_argument("--only", default="", help="comma-separated mutation ids to run")
    p.add_argument("--skip-baseline", action="store_true", help="do not run the unmutated tests first")
    p.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = p.parse_args(argv)
    muts = MUTATIONS
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {m.id for m in muts}
        if unknown:
            p.error(f"unknown mutation id(s): {', '.join(sorted(unknown))}")
        muts = [m for m in muts if m.id in wanted]
    problems = check_patterns(ROOT, muts)
    if args.list:
        for m in muts:
            print(f"{m.id:36s} {m.path:36s} {m.what}\n{'':36s} - {m.old!r}\n{'':36s} + {m.new!r}\n"
                  f"{'':36s} tests: {' '.join(m.tests)}{' -k ' + repr(m.k) if m.k else ''}")
    if problems:
        print("stale mutation patterns (update tests/mutations.py):\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    if args.list:
        return 0
    repo = scratch_copy(ROOT)
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "ATTRKIT_CACHE": os.environ.get("ATTRKIT_CACHE", str(ROOT / ".cache" / "attrkit"))}
    env.pop("ATTRKIT_MARGINS_LOG", None)
    print(f"scratch copy: {repo}", flush=True)
    status = 0
    try:
        if not args.skip_baseline:
            files = sorted({t.split("::")[0] for m in muts for t in m.tests})
            rc, out, sec = run_tests(repo, files, env)
            print(f"baseline ({len(files)} files, unmutated): {'pass' if rc == 0 else 'FAIL'} in {sec:.0f} s",
                  flush=True)
            if rc != 0:
                print(out[-3000:], file=sys.stderr)
                return 1
        rows = []
        for m in muts:
            f = repo / m.path
            original = f.read_text()
            f.write_text(original.replace(m.old, m.new))
            try:
                rc, out, sec = run_tests(repo, m.tests, env, m.k)
            finally:
                f.write_text(original)
            caught = first_failure(out)
            result = "SURVIVED" if rc == 0 else caught if caught else "BROKEN (no test ran: " + \
                (out.strip().splitlines() or ["?"])[-1][:80] + ")"
            if rc == 0 or not caught:
                status = 1
            rows.append((m, result, sec))
            print(f"{m.id:36s} {sec:5.0f} s  {result}", flush=True)
        print("\n| mutation | file | what | caught by |\n|---|---|---|---|")
        for m, result, _ in rows:
            print(f"| `{m.id}` | {m.path} | {m.what} | {result} |")
        survived = [m.id for m, r, _ in rows if r == "SURVIVED"]
        print(f"\n{len(rows)} mutations, {len(survived)} survived{': ' + ', '.join(survived) if survived else ''}, "
              f"{sum(s for _, _, s in rows):.0f} s")
    finally:
        if not args.keep:
            shutil.rmtree(repo.parent, ignore_errors=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
