"""Measure the spread of the margins the tests assert (``conftest.record``); not part of ``make test``.

    python tests/measure_margins.py [--zoo DIR] [--log FILE]

1. Builds the zoo variants the tests read (``shapes_cnn``) into DIR unless there already: 2 torch threads
   (``t2``), seeds 1 and 2 (``s1``, ``s2``), with ``python -m attrkit.zoo``.
2. Runs the tests that depend on a trained model under each variant: the shipped zoo with 1 and 2 threads,
   with ``torch.backends.mkldnn`` disabled, the three zoo variants (``ATTRKIT_ZOO_WEIGHTS``), and the
   ``trained_mlp`` / ``trained_cnn`` fixtures trained with seeds 1 and 2 (``ATTRKIT_TEST_SEED``).
3. Prints, for every recorded quantity, its minimum and maximum over all runs and per run, and which runs failed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO_TESTS = ["tests/test_metrics.py::test_deletion_and_insertion_tell_ig_from_noise",
             "tests/test_experiments.py::test_reference_choice_table", "tests/test_experiments.py::test_layer_shapley_timing",
             "tests/test_cam.py::test_pointing_game_on_two_object_images",
             "tests/test_sanity.py::test_cascading_randomisation_destroys_grad_cam_and_restores_weights",
             "tests/test_games_estimators.py", "tests/test_games_shapley.py::test_axioms_on_trained_cnn",
             "tests/test_games_shapley.py::test_symmetry_on_trained_cnn",
             "tests/test_games_shapley.py::test_kernel_shap_efficiency_exact_when_sampled"]
FIXTURE_TESTS = ["tests/test_gradients.py::test_dummy_feature_gets_exactly_zero",
                 "tests/test_gradients.py::test_gauss_legendre_beats_trapezoid_and_tolerance_is_met",
                 "tests/test_gradients.py::test_adaptive_rule_is_exact_where_simpson_is_and_bounded_by_the_budget",
                 "tests/test_propagation.py::test_deeplift_completeness_with_maxpool_after_relu",
                 "tests/test_propagation_peers.py", "tests/test_gradients_captum.py"]
BUILDS = {"t2": ["--threads", "2"], "s1": ["--seed", "1"], "s2": ["--seed", "2"]}


def variants(zoo: Path) -> list[tuple[str, dict, list[str]]]:
    both = ZOO_TESTS + FIXTURE_TESTS
    return [("shipped, 1 thread", {"OMP_NUM_THREADS": "1"}, both),
            ("shipped, 2 threads", {"OMP_NUM_THREADS": "2"}, both),
            ("shipped, mkldnn off", {"OMP_NUM_THREADS": "1", "ATTRKIT_TEST_NO_MKLDNN": "1"}, both)] + [
        (f"zoo {k}", {"OMP_NUM_THREADS": "1", "ATTRKIT_ZOO_WEIGHTS": str(zoo / k)}, ZOO_TESTS) for k in BUILDS] + [
        (f"fixtures seed {s}", {"OMP_NUM_THREADS": "1", "ATTRKIT_TEST_SEED": str(s)}, FIXTURE_TESTS) for s in (1, 2)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", default="/tmp/attrkit-zoo-variants", help="directory of the zoo variants")
    p.add_argument("--log", default="/tmp/attrkit-margins.jsonl", help="JSON-lines file of the measurements")
    p.add_argument("--only", default=None, help="run only the variants whose label contains this")
    p.add_argument("--no-build", action="store_true", help="do not build missing zoo variants")
    args = p.parse_args(argv)
    zoo, log = Path(args.zoo), Path(args.log)
    env0 = {**os.environ, "PYTHONPATH": str(ROOT)}
    for k, extra in BUILDS.items():
        if not args.no_build and not (zoo / k / "manifest.json").is_file():
            subprocess.run([sys.executable, "-m", "attrkit.zoo", "shapes_cnn", "--out", str(zoo / k), *extra],
                           cwd=ROOT, env=env0, check=True)
    failed = []
    for label, env, tests in variants(zoo):
        if args.only and args.only not in label:
            continue
        env = {**env0, **env, "ATTRKIT_MARGINS_LOG": str(log), "ATTRKIT_MARGINS_VARIANT": label}
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT,
                           env=env, capture_output=True, text=True)
        print(f"{label}: {r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-300:]}", flush=True)
        if r.returncode:
            failed.append(label)
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    by = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by[row["name"]][row["variant"]].append(row["value"])
    for name in sorted(by):
        allv = [v for vs in by[name].values() for v in vs]
        print(f"{name}: {min(allv):.4g}..{max(allv):.4g}  "
              + "; ".join(f"{k}: {min(v):.4g}..{max(v):.4g}" for k, v in by[name].items()))
    print("failed runs:", failed or "none")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
