"""``attrkit evaluate``: score methods on a model and data (zoo or your own), or run the thesis' experiments.

The command line layer above :mod:`attrkit.metrics` and :mod:`attrkit.experiments` (the library never imports
it).

Models and data go through the command line's one pipeline (:mod:`attrkit.cli_io`): ``--model`` is a zoo
name, a model file or ``module:Factory``; ``--data`` is a built-in data set name, a folder of images, image
files, a CSV table or a ``.npz``.
"""
from __future__ import annotations

import argparse
import textwrap
import sys
import time
from types import SimpleNamespace

from .cli_args import epilog, image_args, model_args, table_args
from .experiments.evaluate import METRICS          # the metric registry (name -> how a map is scored)

DEFAULT_METRICS = ("deletion", "insertion", "pointing_game", "relevance_mass")
DEFAULT_METHODS = ("saliency", "integrated_gradients", "grad_cam")
DESCRIPTION = ("Score attribution methods on a model and data (faithfulness, localisation, sanity), or run the "
               "thesis' experiments (the tables of docs/results.md).")
EPILOG = epilog(
    "examples:",
    "  attrkit evaluate --model shapes_cnn --methods saliency,integrated_gradients,grad_cam --n 16",
    "  attrkit evaluate --model digits_cnn --metrics deletion,insertion,infidelity --csv scores.csv",
    "  attrkit evaluate --model model.pt --data images/ --methods saliency,grad_cam --metrics deletion",
    "  attrkit evaluate --experiment all --out docs/",
    "Localisation metrics (pointing_game, relevance_mass, ...) need object masks: built-in shapes data only;",
    "elsewhere they are reported as NaN (null in --json).")


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    model_args(p, default="shapes_cnn")
    p.add_argument("--data", "--input", dest="data", nargs="+", default=None,
                   help="a built-in data set (default: the one the zoo model was trained on), a folder of images, "
                        "image files, a CSV file or a .npz")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated method names")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help=f"comma-separated, from: {', '.join(METRICS)}")
    p.add_argument("--layer", default=None, help="layer for layer-level maps (CAM methods default to the last conv)")
    p.add_argument("--n", type=int, default=16, help="number of samples to evaluate (default 16; the first N of "
                                                     "your data)")
    p.add_argument("--steps", type=int, default=20, help="deletion/insertion steps (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--csv", default=None, help="also write the table as CSV here")
    image_args(p)
    table_args(p, columns=False)
    g = p.add_argument_group("experiments")
    g.add_argument("--experiment", default=None,
                   help="run thesis experiment(s) instead: class_specificity, sanity, layer_shapley, "
                        "faithfulness, reference_choice or all")
    g.add_argument("-o", "--out", default=None, help="with --experiment: folder for results.md (and CSV/PNG "
                                                     "with --files)")
    g.add_argument("--files", action="store_true", help="with --experiment: also save each table as CSV and PNG")
    g.add_argument("--quick", action="store_true", help="with --experiment: small settings (seconds, for a smoke "
                                                        "test)")
    return p


def add_parser(subparsers, parents=()) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command to an ``argparse`` sub-parser set; it dispatches to :func:`run`."""
    p = subparsers.add_parser("evaluate", parents=list(parents), help="evaluate attributions (faithfulness, "
                              "localisation, sanity) or run the thesis' experiments", description=textwrap.fill(DESCRIPTION, 100),
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _configure(p)
    p.set_defaults(func=run)
    return p


def cli_main(argv=None) -> int:
    """Entry point: ``attrkit evaluate ARGS`` == ``cli_main(ARGS)``; returns the exit status."""
    from .cli import main
    return main(["evaluate", *(sys.argv[1:] if argv is None else argv)])


def _split(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def run(args, quiet: bool = False, progress=None) -> dict:
    from .cli_io import UsageError
    say = (lambda *a: None) if quiet else print
    if args.experiment:
        from . import experiments
        names = experiments.EXPERIMENTS if args.experiment == "all" else _split(args.experiment)
        bad = [n for n in names if n not in experiments.EXPERIMENTS]
        if bad:
            raise UsageError(f"unknown experiment(s) {bad}; choose from {', '.join(experiments.EXPERIMENTS)} or all")
        tables = experiments.run_all(names, out=args.out, quick=args.quick, files=args.files, progress=progress)
        for t in tables:
            say(t.to_markdown())
            say()
        return {"experiments": [{"name": t.name, "title": getattr(t, "title", ""), "rows": list(t)}
                                for t in tables]}
    metrics = _split(args.metrics)
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise UsageError(f"unknown metric(s) {bad}; choose from {', '.join(METRICS)}")
    if args.n < 1:
        raise UsageError("--n must be >= 1")
    methods = _split(args.methods)
    from . import cli_inputs as io
    for m in methods:
        io.method_spec(m)
    from .experiments import Table, evaluate_methods
    model, data, label = _model_and_data(args, progress)
    start = time.perf_counter()
    rows = evaluate_methods(model, data, methods, metrics, layer=args.layer, steps=args.steps,
                            seed=args.seed, batch_size=args.batch_size, progress=progress)
    table = Table(rows, name="evaluate", title=f"{label}: {len(data.x)} samples",
                  seconds=time.perf_counter() - start)
    say(table.to_markdown())
    if args.csv:
        table.save(args.csv)
    return {"title": table.title, "rows": rows, "csv": args.csv}


def _model_and_data(args, progress):
    """(model, data with ``.x`` and ``.masks``, a label): zoo model on its data, or through the CLI pipeline."""
    from pathlib import Path

    from . import cli_inputs as io
    from .experiments import ZOO_DATA, held_out, load_model_and_data
    data = args.data
    paths = [Path(d) for d in data] if data else []
    own_data = bool(paths) and (len(paths) > 1 or paths[0].exists())
    if not own_data and not args.weights and not args.trust and args.model in ZOO_DATA and not Path(args.model).exists():
        model, ds = load_model_and_data(args.model, data[0] if data else None, n=args.n, seed=args.seed,
                                        progress=progress)
        return model, ds, args.model
    model = io.load_model(args.model, args.weights, trust=args.trust)
    if not own_data:
        if not data:
            raise io.UsageError(f"--model {args.model} needs --data: a built-in data set name, a folder of images, "
                                "image files, a CSV file or a .npz")
        return model, held_out(data[0], args.n, args.seed, model), args.model
    if len(paths) == 1 and paths[0].is_dir():
        from .readers import image_files
        paths = [paths[0] / rel for rel in image_files(paths[0])]
        if not paths:
            raise io.InputError(f"no PNG or JPEG images under {data[0]}")
        paths = paths[:args.n]
    x, names, _, _ = io.read_inputs(paths, model, args)
    io.check_forward(model, x, channels_given=args.channels is not None)
    return model, SimpleNamespace(x=x[:args.n], masks=None), f"{args.model} on {data[0]}"
