"""``attrkit run``: the command-line face of :func:`attrkit.runs.run`.

Wire it into a parent parser with :func:`add_parser` (sets ``func=run_command`` on the sub-command), or call
:func:`cli_main` with an argument list (what ``attrkit run ...`` does). Exit codes: 0 done (bad records only
warn), 1 the run could not start or failed (a one-line reason on stderr, e.g. a changed configuration), 2 bad
command-line arguments (argparse), 3 done but with bad records under ``--strict``.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings

EPILOG = """examples:
  attrkit run attrkit.models:bench_cnn images/ --size 64 --out run-ig -O steps=32
  attrkit run model.pt table.csv --target-column label --method saliency --out run-sal
  attrkit run mypkg.models:build data.parquet --backend ray --workers 8 --out /shared/runs/ig
Re-running the same command resumes. Bad records are listed in OUT/errors.jsonl; --strict makes them fail the
run (exit code 3). Exit code 1: the run could not start or failed; 2: bad arguments."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``run`` sub-command to ``subparsers`` (from ``parser.add_subparsers()``)."""
    p = subparsers.add_parser("run", help="explain a whole data set into a resumable shard store (local or Ray)",
                              description="Explain every sample of a data set; attributions go to OUT in shards. "
                                          "Resumable: re-running the same command computes only missing shards.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(p)
    p.set_defaults(func=run_command)
    return p


def configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("model", help="'package.module:factory' (zero-argument callable) or a model file saved with "
                                 "attrkit.train.save")
    p.add_argument("data", help="folder of PNG/JPEG images, .csv or .parquet table, .npz (x, y) / .npy, or "
                                "'package.module:function' returning a data set")
    p.add_argument("-m", "--method", default="integrated_gradients", help="attribution method (see ak.methods())")
    p.add_argument("-o", "--out", required=True, help="run folder (created; resumed when it exists)")
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--workers", type=int, default=None, help="Ray actors (one model each); default: all CPUs")
    p.add_argument("--shard-size", type=int, default=256, help="samples per shard / per explain call (256)")
    p.add_argument("--batch-size", type=int, default=None, help="rows per model call inside explain")
    p.add_argument("--seed", type=int, default=0, help="run seed (each shard's seed derives from it)")
    p.add_argument("--target", default=None, help="class index, 'label' (data labels) or 'predicted' (default)")
    p.add_argument("--layer", default=None, help="attribute at this layer (module name)")
    p.add_argument("--device", default=None, help="move the model to this device (e.g. cuda)")
    p.add_argument("-O", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="method option, value parsed as JSON when possible (e.g. -O steps=32 -O baseline=zeros)")
    g = p.add_argument_group("images")
    g.add_argument("--size", default=None, help="resize images to SIZE or HxW pixels")
    g.add_argument("--mean", default=None, help="per-channel mean to subtract after scaling to [0, 1] (a,b,c)")
    g.add_argument("--std", default=None, help="per-channel std to divide by (a,b,c)")
    g.add_argument("--grayscale", action="store_true", help="read images as one grey channel")
    g = p.add_argument_group("tables")
    g.add_argument("--columns", default=None, help="feature columns (a,b,c); default: all but target/id")
    g.add_argument("--target-column", default=None, help="label column")
    g.add_argument("--id-column", default=None, help="sample id column (default: row number)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any record was bad")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _floats(text):
    return None if text is None else [float(v) for v in text.split(",")]


def _size(text):
    if text is None:
        return None
    parts = text.lower().replace("x", ",").split(",")
    vals = [int(v) for v in parts]
    return vals[0] if len(vals) == 1 else tuple(vals)


def run_command(args) -> int:
    """Run the parsed ``args``; returns the exit code."""
    from pathlib import Path

    from .api import BadRecordsError, BadRecordsWarning, run
    from .sources import ImageFolderSource, TableSource
    try:
        options = {}
        for item in args.option:
            if "=" not in item:
                raise ValueError(f"-O/--option expects KEY=VALUE, got {item!r}")
            k, v = item.split("=", 1)
            options[k.strip()] = _value(v)
        target = args.target
        if target is not None and target not in ("label", "predicted"):
            try:
                target = int(target)
            except ValueError:
                raise ValueError(f"--target must be a class index, 'label' or 'predicted', got {target!r}") from None
        target = None if target == "predicted" else target
        data = args.data
        path = Path(data)
        if path.is_dir():
            data = ImageFolderSource(path, size=_size(args.size), mean=_floats(args.mean), std=_floats(args.std),
                                     mode="L" if args.grayscale else "RGB")
        elif path.is_file() and path.suffix.lower() in (".csv", ".parquet", ".pq"):
            data = TableSource(path, columns=None if args.columns is None else args.columns.split(","),
                               target=args.target_column, id_column=args.id_column)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BadRecordsWarning)
            result = run(args.model, data, method=args.method, out=args.out, backend=args.backend,
                         batch_size=args.batch_size, shard_size=args.shard_size, workers=args.workers,
                         seed=args.seed, target=target, layer=args.layer, device=args.device,
                         strict=args.strict, progress=False if args.no_progress else None, **options)
        for w in caught:
            if not issubclass(w.category, BadRecordsWarning):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    except BadRecordsError as err:
        print(f"attrkit run: {err}", file=sys.stderr)
        return 3
    except (ValueError, TypeError, ImportError) as err:
        print(f"attrkit run: error: {err}", file=sys.stderr)
        return 1
    s = result.stats
    print(f"{len(result)} attributions ({result.method}) in {result.out}: {len(result.completed)}/"
          f"{result.n_shards} shards, {s['computed_shards']} computed now, {s['skipped_shards']} already done; "
          f"{s['samples_per_s']:.1f} samples/s")
    if result.n_errors:
        print(f"warning: {result.n_errors} bad record(s) skipped, see {result.out / 'errors.jsonl'}",
              file=sys.stderr)
    return 0


def cli_main(argv=None) -> int:
    """``attrkit run ...`` as a function: parse ``argv`` (the arguments after ``run``) and run."""
    p = configure(argparse.ArgumentParser(prog="attrkit run", epilog=EPILOG,
                                          formatter_class=argparse.RawDescriptionHelpFormatter))
    return run_command(p.parse_args(argv))
