"""The ``attrkit`` command line: demo, explain, train, evaluate, methods, run, bench.

Exit status: 0 ok, 2 usage error (bad or missing arguments), 1 failure (a one-line reason on stderr, no
traceback; set ATTRKIT_DEBUG=1 to see it). ``--quiet`` hides progress and the summary; ``--json`` prints one
JSON object on stdout instead of the summary. ``evaluate``, ``run`` and ``bench`` hand their arguments to
``attrkit.metrics``, ``attrkit.runs`` and ``attrkit.bench`` (``attrkit evaluate --help`` shows theirs).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import warnings
from pathlib import Path

from . import __version__

# delegated commands: name -> (module, function taking argv, one-line help)
DELEGATED = {
    "evaluate": ("attrkit.metrics", "cli_main", "evaluate attributions (faithfulness, localisation, sanity) "
                 "or run the thesis' experiments"),
    "run": ("attrkit.runs", "cli_main", "explain a whole data set into a resumable store (local or Ray)"),
    "bench": ("attrkit.bench", "main", "benchmark attrkit against Captum, SHAP, LIME and pytorch-grad-cam"),
    "landscape": ("attrkit.cli_landscape", "main", "the loss landscape around the trained weights (Li et al. 2018)"),
}


class CLIError(Exception):
    """A failure to report in one line (exit status 1)."""


# ------------------------------------------------------------------------------------------ parser
def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("output")
    g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bars and no summary (errors are still printed)")
    g.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print one JSON object with the results on stdout")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    p = argparse.ArgumentParser(prog="attrkit", parents=[common], description=(
        "Explain PyTorch model predictions with attributions (gradients, relevance propagation, CAMs, Shapley "
        "values, LIME) and evaluate how far to trust them. Start with `attrkit demo`."),
        epilog="`attrkit COMMAND --help` describes each command.")
    p.add_argument("--version", action="version", version=f"attrkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", parents=[common], help="the main job: load the built-in models, explain "
                       "held-out samples with every method, evaluate, write the report", description=(
                           "Load the built-in models (the zoo's shipped weights), explain held-out "
                           "samples with every method family at pixel and layer level, run the evaluation "
                           "tables, and write report.html plus PNG figures to --out."))
    d.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    d.add_argument("--fast", action="store_true", help="fewer samples and methods settings (under 2 minutes)")
    d.add_argument("--seed", type=int, default=0, help="seed for sampled methods (default 0)")
    d.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: fastest for the demo's small models; 0 keeps torch's default)")

    e = sub.add_parser("explain", parents=[common], help="explain your own model on images or CSV rows",
                       description="Explain a model on images (PNG/JPEG) or CSV rows; writes a heatmap PNG per "
                                   "sample and the attribution (.npz) to --out.",
                       epilog="models: a file written by attrkit.train.save, a TorchScript file, or "
                              "'package.module:factory' (with --weights for a state-dict file).")
    e.add_argument("--model", required=True, help="model file or package.module:factory")
    e.add_argument("--weights", default=None, help="state-dict file to load into a module:factory model")
    e.add_argument("--input", required=True, nargs="+", help="image file(s) (PNG/JPEG), one CSV file, or one .npz "
                   "(several arrays = several model inputs: named ones by keyword, arr_0, arr_1 ... by position)")
    e.add_argument("--method", default="integrated_gradients", help="attribution method (see `attrkit methods`)")
    e.add_argument("--target", default=None, help="class index or name (default: the predicted class)")
    e.add_argument("--layer", default=None, help="attribute at this layer (a name from model.named_modules())")
    e.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option, e.g. --option steps=64 --option baseline=blur --option "
                        "players=superpixels:50 --option local=false (repeatable)")
    e.add_argument("--out", default="attrkit-out", help="output folder (default: attrkit-out)")
    e.add_argument("--size", default=None, help="resize images to N or HxW pixels (default: the model's size)")
    e.add_argument("--mean", default=None, help="per-channel mean to subtract, e.g. 0.485,0.456,0.406")
    e.add_argument("--std", default=None, help="per-channel std to divide by, e.g. 0.229,0.224,0.225")
    e.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="read images as 1 (grey) or 3 (RGB) channels (default: what the model's first conv takes)")
    e.add_argument("--mode", default="signed", choices=("signed", "positive", "negative", "absolute"),
                   help="which values the heatmap shows (default: signed)")
    e.add_argument("--batch-size", type=int, default=None, help="rows per model call")
    e.add_argument("--seed", type=int, default=0, help="seed for sampled methods")

    t = sub.add_parser("train", parents=[common], help="train a model on built-in data and save it",
                       description="Train a model on a built-in data set with the lecture's loop and save it "
                                   "(attrkit.train.save format, usable by `attrkit explain --model`). "
                                   "With --zoo, load a model of the zoo (--force: re-run its recipe and rewrite its shipped weights).")
    t.add_argument("--data", default=None, help="digits, shapes, faces, breast_cancer, diabetes, synthetic_tabular")
    t.add_argument("--model", default=None, help="small_cnn, mlp or logistic (default: small_cnn for images, mlp "
                                                  "for tables)")
    t.add_argument("--zoo", default=None, help="a model name of attrkit.zoo to load (or rebuild with --force) instead")
    t.add_argument("--force", action="store_true", help="with --zoo: re-run the recipe and rewrite the shipped weights (as make zoo)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--test-fraction", type=float, default=0.2)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="model.pt", help="where to save the model (default: model.pt)")

    m = sub.add_parser("methods", parents=[common], help="list the attribution methods (the registry)",
                       description="The registry of attribution methods: family, whether each needs gradients, "
                                   "works at a layer, uses players (coalition games) or samples.")
    m.add_argument("--family", default=None, help="only this family (gradient, propagation, cam, game)")

    for name, (_mod, _fn, text) in DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)
    return p


# --------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    """Run the command line; return the exit status (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = {"quiet": False, "json": False}
    head = 0
    while head < len(argv) and argv[head] in ("-q", "--quiet", "--json"):
        flags["json" if argv[head] == "--json" else "quiet"] = True
        head += 1
    if head < len(argv) and argv[head] in DELEGATED:
        return _delegate(argv[head], argv[head + 1:], flags)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:          # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    if not args.command:
        parser.print_help()
        return 2
    quiet = bool(getattr(args, "quiet", False))
    as_json = bool(getattr(args, "json", False))
    _one_line_warnings()
    try:
        result = COMMANDS[args.command](args, quiet=quiet or as_json)
    except KeyboardInterrupt:
        print("attrkit: interrupted", file=sys.stderr)
        return 130
    except Exception as err:           # one line, no traceback (ATTRKIT_DEBUG=1 shows it)
        if os.environ.get("ATTRKIT_DEBUG"):
            raise
        print(f"attrkit {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(result, default=_json_default))
    return 0


def _delegate(name: str, rest: list[str], flags: dict) -> int:
    mod_name, fn_name, text = DELEGATED[name]
    try:
        mod = importlib.import_module(mod_name)
        fn = getattr(mod, fn_name)
    except (ImportError, AttributeError) as err:
        if rest and rest[0] in ("-h", "--help"):
            print(f"usage: attrkit {name} ...\n\n{text}.\n\nNot available in this installation: "
                  f"{mod_name}.{fn_name} could not be imported ({_one_line(err)}).")
            return 0
        print(f"attrkit {name}: error: this command needs {mod_name}.{fn_name}, which could not be imported "
              f"({_one_line(err)})", file=sys.stderr)
        return 1
    if flags.get("quiet") and "--no-progress" not in rest:
        rest = rest + ["--no-progress"] if name in ("evaluate", "run") else rest
    _one_line_warnings()
    try:
        code = fn(rest)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        if os.environ.get("ATTRKIT_DEBUG"):
            raise
        print(f"attrkit {name}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    return int(code or 0)


def _one_line(err) -> str:
    text = str(err) if not isinstance(err, BaseException) or str(err) else type(err).__name__
    text = " ".join(text.split())
    if isinstance(err, (FileNotFoundError, IsADirectoryError, PermissionError)) and err.filename:
        text = f"{err.strerror}: {err.filename}"
    return text


def _one_line_warnings() -> None:
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"attrkit: warning: {_one_line(message)}", file=sys.stderr)
    warnings.showwarning = show


def _json_default(o):
    try:
        import numpy as np
        import torch
        if isinstance(o, torch.Tensor):
            return o.detach().cpu().tolist()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _say(quiet: bool, *lines) -> None:
    if not quiet:
        for line in lines:
            print(line)


# ------------------------------------------------------------------------------------------ commands
def cmd_demo(args, quiet: bool) -> dict:
    from .demo import run_demo
    summary = run_demo(out=args.out, fast=args.fast, seed=args.seed, progress=False if quiet else None,
                       log=None if quiet else print, threads=args.threads or None)
    _say(quiet, "", f"report: {summary['report']}")
    return summary


def cmd_methods(args, quiet: bool) -> dict:
    from .registry import methods
    table = methods(args.family)
    if args.family and not table:
        fams = sorted({s.family for s in methods().values()})
        raise CLIError(f"no methods in family {args.family!r}; families: {', '.join(fams)}")
    _say(quiet, str(table))
    return {"methods": [s.row() for s in table.values()]}


def cmd_explain(args, quiet: bool) -> dict:
    from .api import explain
    from .registry import get
    from . import cli_inputs as io

    spec = get(args.method)                        # unknown method: a one-line ValueError
    model = io.load_model(args.model, args.weights)
    options = io.parse_options(args.option)
    paths = [Path(p) for p in args.input]
    for p in paths:
        if not p.exists():
            raise CLIError(f"no such input file: {p}")
        if p.is_dir():
            raise CLIError(f"{p} is a folder; give image files or one CSV file (use `attrkit run` for folders)")
    tabular = len(paths) == 1 and paths[0].suffix.lower() in (".csv", ".tsv", ".txt")
    if len(paths) == 1 and paths[0].suffix.lower() == ".npz":       # arrays; several arrays = several inputs
        import torch
        x = io.read_npz(paths[0])
        first = x if isinstance(x, torch.Tensor) else next(iter(x.values())) if isinstance(x, dict) else x[0]
        names, feature_names = [f"{paths[0].stem}_{i}" for i in range(first.shape[0])], None
    elif tabular:
        x, names, feature_names = io.read_csv(paths[0], model)
    else:
        if any(p.suffix.lower() in (".csv", ".tsv", ".npz") for p in paths):
            raise CLIError("give one CSV file, one .npz file (several arrays in it = several model inputs) or "
                           "image files, not a mix")
        x = io.read_images(paths, model, size=args.size, mean=args.mean, std=args.std, channels=args.channels)
        names, feature_names = [p.stem for p in paths], None
    classes = io.model_classes(model)
    target = io.parse_target(args.target, classes)
    layer = args.layer
    if isinstance(model, io.ScriptedModel) and (layer is not None or spec.layer == "required"):
        raise CLIError("layer-level attributions need the model as an nn.Module (a file saved by "
                       "attrkit.train.save or module:factory); TorchScript models hide their layers")
    if spec.layer == "required" and layer is None and not hasattr(spec.fn, "default_layer"):
        raise CLIError(f"method {spec.name!r} needs --layer")
    options = io.resolve_players(options, x, layer)
    a = explain(model, x, method=spec.name, target=target, layer=layer, batch_size=args.batch_size,
                seed=args.seed, progress=False if quiet else None, **options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = paths[0].stem if len(paths) == 1 else "batch"
    npz = a.save(out / f"{io._slug(stem)}_{spec.name}.npz")
    figures = io.write_figures(a, out, names, spec.name, classes, feature_names, args.mode)
    _say(quiet, f"{spec.name} on {len(a)} sample(s)" + (f" at layer {a.layer}" if a.layer else "")
         + f": {a.info.get('n_evals', '?')} model evaluations, {a.info.get('seconds', 0):.2f} s",
         *(f"  {f}" for f in figures), f"  {npz}")
    return {"method": spec.name, "layer": a.layer, "samples": names, "figures": [str(f) for f in figures],
            "attribution": str(npz), "targets": a.target if not hasattr(a.target, "tolist") else a.target.tolist(),
            "info": {k: v for k, v in a.info.items() if isinstance(v, (int, float, str, bool))}}


def cmd_train(args, quiet: bool) -> dict:
    from . import cli_inputs as io
    if args.zoo:
        return io.train_zoo(args.zoo, force=args.force, quiet=quiet)
    if not args.data:
        raise CLIError("give --data (a built-in data set) or --zoo NAME")
    result = io.train_model(args.data, args.model, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                            test_fraction=args.test_fraction, seed=args.seed, out=args.out, quiet=quiet)
    _say(quiet, f"saved {result['model']} trained on {result['data']} to {result['path']} "
                f"({', '.join(f'{k} {v:.3f}' for k, v in result['held_out'].items())} on held-out data)")
    return result


COMMANDS = {"demo": cmd_demo, "methods": cmd_methods, "explain": cmd_explain, "train": cmd_train}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
