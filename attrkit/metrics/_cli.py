"""``attrkit evaluate``: score methods on a built-in model and data set, or run the thesis' experiments.

    attrkit evaluate --model shapes_cnn --methods saliency,integrated_gradients,grad_cam --n 16
    attrkit evaluate --model digits_cnn --metrics deletion,insertion,infidelity --csv scores.csv
    attrkit evaluate --experiment all --out docs/            # the tables of docs/results.md
"""
from __future__ import annotations

import argparse
import sys
import time

METRICS = ("deletion", "insertion", "morf_lerf", "faithfulness_correlation", "infidelity", "max_sensitivity",
           "completeness", "pointing_game", "relevance_mass", "relevance_rank", "mask_auc", "sanity")
DEFAULT_METRICS = ("deletion", "insertion", "pointing_game", "relevance_mass")
DEFAULT_METHODS = ("saliency", "integrated_gradients", "grad_cam")


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model", default="shapes_cnn",
                   help="a model of attrkit.zoo (shapes_cnn, digits_cnn, ...) or a file written by attrkit.train.save")
    p.add_argument("--data", default=None, help="built-in data set (default: the one the zoo model was trained on)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated method names")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help=f"comma-separated, from: {', '.join(METRICS)}")
    p.add_argument("--layer", default=None, help="layer for layer-level maps (CAM methods default to the last conv)")
    p.add_argument("--n", type=int, default=16, help="number of held-out samples to evaluate (default 16)")
    p.add_argument("--steps", type=int, default=20, help="deletion/insertion steps (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--csv", default=None, help="also write the table as CSV here")
    p.add_argument("--experiment", default=None,
                   help="run thesis experiment(s) instead: class_specificity, sanity, layer_shapley, "
                        "faithfulness, reference_choice or all")
    p.add_argument("--out", default=None, help="with --experiment: folder for results.md (and CSV/PNG with --files)")
    p.add_argument("--files", action="store_true", help="with --experiment: also save each table as CSV and PNG")
    p.add_argument("--quick", action="store_true", help="with --experiment: small settings (seconds, for a smoke test)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command to an ``argparse`` sub-parser set; it dispatches to :func:`run`."""
    p = subparsers.add_parser("evaluate", help="evaluate attributions (faithfulness, localisation, sanity) or "
                                                "run the thesis' experiments", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    _configure(p)
    p.set_defaults(func=run)
    return p


def cli_main(argv=None) -> int:
    """Entry point: ``attrkit evaluate ARGS`` == ``cli_main(ARGS)``; returns the exit status."""
    p = _configure(argparse.ArgumentParser(prog="attrkit evaluate", description=__doc__,
                                           formatter_class=argparse.RawDescriptionHelpFormatter))
    args = p.parse_args(argv)
    try:
        return run(args)
    except (ValueError, TypeError, ImportError) as err:
        print(f"attrkit evaluate: error: {err}", file=sys.stderr)
        return 2


def _split(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def run(args) -> int:
    progress = False if args.no_progress else None
    if args.experiment:
        from .. import experiments
        names = experiments.EXPERIMENTS if args.experiment == "all" else _split(args.experiment)
        tables = experiments.run_all(names, out=args.out, quick=args.quick, files=args.files, progress=progress)
        for t in tables:
            print(t.to_markdown())
            print()
        return 0
    metrics = _split(args.metrics)
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; choose from {', '.join(METRICS)}")
    if args.n < 1:
        raise ValueError("--n must be >= 1")
    from ..experiments import Table, evaluate_methods, load_model_and_data
    model, data = load_model_and_data(args.model, args.data, n=args.n, seed=args.seed, progress=progress)
    start = time.perf_counter()
    rows = evaluate_methods(model, data, _split(args.methods), metrics, layer=args.layer, steps=args.steps,
                            seed=args.seed, batch_size=args.batch_size, progress=progress)
    table = Table(rows, name="evaluate", title=f"{args.model}: {len(data)} samples",
                  seconds=time.perf_counter() - start)
    print(table.to_markdown())
    if args.csv:
        table.save(args.csv)
    return 0
