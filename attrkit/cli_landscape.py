"""``attrkit landscape``: the loss landscape around a model's trained weights (:func:`attrkit.loss_landscape`).

Writes ``landscape.png`` (the curve, or contour and surface) and ``landscape.json`` (the grid and the settings)
to ``--out``. Flags and exit statuses are the shared ones of :mod:`attrkit.cli_args`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from .cli_args import formatter, model_args, output_parent
    p = argparse.ArgumentParser(
        prog="attrkit landscape", parents=[output_parent()], formatter_class=formatter(), description=(
            "Draw the loss around a model's trained weights along one or two random filter-normalised directions "
            "(Li et al. 2018): a curve, or a contour map and a surface."),
        epilog="\n".join(["examples:", "  attrkit landscape --model digits_cnn --steps 11",   # (attrkit adds
                           "  attrkit landscape --model model.pt --data data.npz --directions 1"]))  # the exit table)
    model_args(p)
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None, help="an .npz with arrays x and y (or arr_0, arr_1), or a zoo model name "
                   "(its data); default: the zoo model's own data")
    g.add_argument("--split", default="train", choices=("test", "train"),
                   help="zoo data split (default: train, the loss the weights were trained to minimise)")
    g.add_argument("--limit", type=int, default=None, help="use only the first N rows of the data")
    g = p.add_argument_group("landscape")
    g.add_argument("--loss", default=None, choices=("cross_entropy", "bce", "mse"),
                   help="loss (default: cross-entropy for class labels, MSE for numbers)")
    g.add_argument("--directions", type=int, default=2, choices=(1, 2), help="1: a curve, 2: a surface (default)")
    g.add_argument("--steps", type=int, default=21, help="grid points per direction (default 21)")
    g.add_argument("--span", type=float, default=1.0, help="the grid covers [-span, span] (default 1)")
    g.add_argument("--seed", type=int, default=0, help="seed of the random directions (default 0)")
    g.add_argument("--norm", default="filter", choices=("filter", "layer", "none"),
                   help="direction normalisation (default: filter, as in Li et al. 2018)")
    g.add_argument("--batch-size", type=int, default=None, help="rows per model call (default: from the memory budget)")
    g.add_argument("--log", action="store_true", help="draw log10 of the loss")
    g.add_argument("--out", default="attrkit-out", help="output folder (default: attrkit-out)")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 2
        if as_json and code:
            print(json.dumps({"command": "landscape", "error": "bad arguments (see attrkit landscape --help)",
                              "exit": code}))
        return code
    quiet = getattr(args, "quiet", False)
    try:
        result = run(args, progress=False if (quiet or as_json or getattr(args, "no_progress", False)) else None)
    except Exception as err:            # one line, no traceback
        msg = " ".join(str(err).split()) or type(err).__name__
        status = int(getattr(err, "exit_status", 1))
        if as_json:
            print(json.dumps({"command": "landscape", "error": msg, "exit": status}))
        print(f"attrkit landscape: error: {msg}", file=sys.stderr)
        return status
    if as_json:
        print(json.dumps(result))
    elif not quiet:
        print(f"loss at the trained weights: {result['center']:.4g} ({result['loss']}); grid "
              f"{'x'.join(str(s) for s in result['shape'])}, range {result['min']:.4g} .. {result['max']:.4g}")
        print(f"wrote {result['figure']} and {result['table']}")
    return 0


def run(args, progress=None) -> dict:
    from . import zoo
    from .cli_io import load_model
    from .landscape import loss_landscape
    model = load_model(args.model, args.weights, trust=args.trust)
    data = _data(args, zoo)
    ls = loss_landscape(model, data, loss=args.loss, directions=args.directions, steps=args.steps, span=args.span,
                        seed=args.seed, norm=args.norm, batch_size=args.batch_size,
                        progress=progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig = ls.plot(path=out / "landscape.png", log=args.log)
    del fig
    record = {"center": ls.center, "loss": ls.loss_name, "alphas": ls.alphas.tolist(),
              "betas": None if ls.betas is None else ls.betas.tolist(), "values": ls.loss.tolist(),
              "settings": {k: v for k, v in ls.info.items() if k != "seconds"}}
    (out / "landscape.json").write_text(json.dumps(record) + "\n")
    return {"command": "landscape", "exit": 0, "center": ls.center, "loss": ls.loss_name, "shape": list(ls.loss.shape),
            "min": float(ls.loss.min()), "max": float(ls.loss.max()), "seconds": ls.info["seconds"],
            "figure": str(out / "landscape.png"), "table": str(out / "landscape.json")}


def _data(args, zoo):
    import numpy as np
    import torch
    source = args.data if args.data is not None else args.model
    if source in zoo.names():
        ds = zoo.dataset(source, args.split)
        x, y = ds.x, ds.y
    elif Path(source).suffix == ".npz" and Path(source).is_file():
        with np.load(source, allow_pickle=False) as z:
            keys = ("x", "y") if {"x", "y"} <= set(z.files) else ("arr_0", "arr_1")
            if not set(keys) <= set(z.files):
                raise ValueError(f"{source} must hold arrays 'x' and 'y' (or arr_0 and arr_1); it has {z.files}")
            x, y = (torch.from_numpy(z[k].copy()) for k in keys)
        if x.is_floating_point():
            x = x.float()
    elif args.data is None:
        raise ValueError(f"{args.model!r} is not a zoo model, so its data is not known: give --data file.npz "
                         "(arrays x and y)")
    else:
        raise ValueError(f"--data {source!r} is neither an .npz file nor a zoo model name ({', '.join(zoo.names())})")
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be a positive number of rows, got {args.limit}")
        x = tuple(t[:args.limit] for t in x) if isinstance(x, tuple) else x[:args.limit]
        y = y[:args.limit]
    return x, y
