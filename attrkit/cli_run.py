"""``attrkit run``: the command-line face of :func:`attrkit.runs.run` (the CLI layer: the library never imports it).

The flags are ``attrkit explain``'s (:mod:`attrkit.cli_args`) and models and images are read by the same
pipeline (:mod:`attrkit.cli_io`): ``attrkit run --model model.pt --data images/ --out run/``. The older form
with two positionals (``attrkit run MODEL DATA --out run/``) still works. :func:`cli_main` runs it from an
argument list (what ``attrkit run ...`` does) and returns the exit status.
"""
from __future__ import annotations

import argparse
import textwrap
import functools
import warnings

from .cli_args import epilog, image_args, method_args, model_args, table_args

EPILOG = epilog(
    "examples:",
    "  attrkit run --model model.pt --data images/ --method integrated_gradients --out run/",
    "  attrkit run --model attrkit.models:bench_cnn --data images/ --size 64 --out run-ig -O steps=32",
    "  attrkit run --model model.pt --data table.csv --target-column label --method saliency --out run-sal",
    "  attrkit run --model mypkg.models:build --data data.parquet --backend ray --workers 8 --out /shared/ig",
    "Re-running the same command resumes. Bad records (a corrupt image, a row or sample with NaN) are listed in",
    "OUT/errors.jsonl and skipped; --strict makes them fail the run with exit status 3.")
DESCRIPTION = ("Explain every sample of a data set; attributions go to OUT in shards. Resumable: re-running the "
               "same command computes only missing shards.")


def add_parser(subparsers, parents=()) -> argparse.ArgumentParser:
    """Add the ``run`` sub-command to ``subparsers`` (from ``parser.add_subparsers()``)."""
    p = subparsers.add_parser("run", parents=list(parents), help="explain a whole data set into a resumable "
                              "shard store (local or Ray)", description=textwrap.fill(DESCRIPTION, 100), epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(p)
    p.set_defaults(func=run_command)
    return p


def configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("model_pos", nargs="?", default=None, metavar="MODEL", help="(older form) same as --model")
    p.add_argument("data_pos", nargs="?", default=None, metavar="DATA", help="(older form) same as --data")
    model_args(p, required=False)
    p.add_argument("--data", "--input", dest="data", default=None,
                   help="folder of PNG/JPEG images, .csv or .parquet table, .npz (x, y) / .npy, or "
                        "'package.module:function' returning a data set")
    p.add_argument("-o", "--out", required=True, help="run folder (created; resumed when it exists)")
    method_args(p)
    image_args(p)
    table_args(p)
    g = p.add_argument_group("run")
    g.add_argument("--backend", choices=("local", "ray"), default="local")
    g.add_argument("--workers", type=int, default=None, help="Ray actors (one model each); default: all CPUs")
    g.add_argument("--shard-size", type=int, default=256, help="samples per shard / per explain call (256)")
    g.add_argument("--device", default=None, help="move the model to this device (e.g. cuda)")
    g.add_argument("--strict", action="store_true", help="exit with status 3 when any record was bad")
    return p


def run_command(args, quiet: bool = False, progress=None) -> dict:
    """Run the parsed ``args``; returns the JSON summary (errors are raised)."""
    from pathlib import Path

    from . import cli_inputs as io
    from .cli_io import UsageError, image_settings, load_model
    from .runs.api import BadRecordsWarning, run
    from .runs.sources import ImageFolderSource, TableSource

    spec_model = _one(args.model, args.model_pos, "model")
    spec_data = _one(args.data, args.data_pos, "data")
    spec = io.method_spec(args.method)
    model = load_model(spec_model, args.weights, trust=args.trust)
    io.check_layer(model, args.layer)
    options = io.parse_options(args.option)
    target = args.target
    if target is not None and target not in ("label", "predicted"):
        target = io.parse_target(target, io.model_classes(model))
    target = None if target == "predicted" else target
    data = spec_data
    path = Path(spec_data)
    if path.is_dir():
        mode, hw, mean, std = image_settings(model, args.size, args.mean, args.std, args.channels)
        data = ImageFolderSource(path, size=hw, mean=mean, std=std, mode=mode)
    elif path.is_file() and path.suffix.lower() in (".csv", ".parquet", ".pq"):
        data = TableSource(path, columns=None if args.columns is None else args.columns.split(","),
                           target=args.target_column, id_column=args.id_column)
    elif not path.exists() and ":" not in spec_data:
        raise UsageError(f"--data {spec_data}: no such folder or file")
    factory = model if args.backend == "local" else \
        functools.partial(load_model, spec_model, args.weights, args.trust)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BadRecordsWarning)
        result = run(factory, data, method=spec.name, out=args.out, backend=args.backend,
                     batch_size=args.batch_size, shard_size=args.shard_size, workers=args.workers,
                     seed=args.seed, target=target, layer=args.layer, device=args.device,
                     strict=args.strict, progress=progress, **options)
    for w in caught:
        if not issubclass(w.category, BadRecordsWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    s = result.stats
    if not quiet:
        print(f"{len(result)} attributions ({result.method}) in {result.out}: {len(result.completed)}/"
              f"{result.n_shards} shards, {s['computed_shards']} computed now, {s['skipped_shards']} already done; "
              f"{s['samples_per_s']:.1f} samples/s")
    if result.n_errors:
        import sys
        print(f"attrkit run: warning: {result.n_errors} bad record(s) skipped, see {result.out / 'errors.jsonl'}",
              file=sys.stderr)
    return {"out": str(result.out), "method": result.method, "samples": len(result), "shards": result.n_shards,
            "bad_records": result.n_errors, "errors": str(result.out / "errors.jsonl"),
            "stats": {k: v for k, v in s.items() if isinstance(v, (int, float, str, bool))}}


def _one(flag, positional, what: str) -> str:
    from .cli_io import UsageError
    if flag is not None and positional is not None and flag != positional:
        raise UsageError(f"give the {what} once: --{what} {flag} or the positional {positional}, not both")
    value = flag if flag is not None else positional
    if value is None:
        raise UsageError(f"--{what} is required (e.g. attrkit run --model model.pt --data images/ --out run/)")
    return value


def cli_main(argv=None) -> int:
    """``attrkit run ...`` as a function: ``cli_main(ARGS)`` == ``attrkit run ARGS``; returns the exit status."""
    import sys
    from .cli import main
    return main(["run", *(sys.argv[1:] if argv is None else argv)])
