"""The ``attrkit`` command line: demo, explain, train, evaluate, methods, run, bench.

Every subcommand takes its flags from :mod:`attrkit.cli_args` (one vocabulary) and reads models and data
through :mod:`attrkit.cli_io` (one pipeline). Exit status (also in every ``--help``): 0 done, 1 failed
(a one-line reason on stderr, no traceback; ATTRKIT_DEBUG=1 shows it), 2 usage error, 3 bad records under
``--strict``, 130 interrupted. ``--json`` (before or after the subcommand) prints one JSON object on stdout,
errors included; ``-q`` hides progress and the summary, ``--no-progress`` only the progress bars.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import warnings
from pathlib import Path

from . import __version__
from .core.json_values import jsonable
from .cli_args import (EXIT_CODES, FAILED, INTERRUPTED, OK, USAGE, epilog, image_args, method_args, model_args,
                       output_parent, table_args)

# delegated commands: name -> (module, function taking argv, one-line help)
DELEGATED = {
    "bench": ("attrkit.bench", "main", "benchmark attrkit against Captum, SHAP, LIME and pytorch-grad-cam"),
    "landscape": ("attrkit.cli_landscape", "main", "the loss landscape around the trained weights (Li et al. 2018)"),
}
# delegated commands that print their own JSON object under --json (the flag is passed on, no envelope added)
OWN_JSON = {"landscape"}
# subcommands defined in other modules: each has add_parser(subparsers, parents) that adds its parser with
# parents=parents (the output flags) and set_defaults(func=f), f(args, quiet, progress=None) -> dict (the JSON
# result; print the human summary unless quiet; raise errors, their exit_status attribute picks the code)
EXTRA = ("attrkit.cli_run", "attrkit.cli_evaluate")


class CLIError(Exception):
    """A failure to report in one line (exit status 1)."""
    exit_status = FAILED


class ArgumentError(Exception):
    """argparse found a usage error (exit status 2)."""
    exit_status = USAGE


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so errors can also be reported as JSON."""

    def error(self, message):
        raise ArgumentError(f"{self.prog}: error: {message}\n{self.format_usage().strip()}")


# ------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    common = output_parent()
    fmt = argparse.RawDescriptionHelpFormatter
    p = Parser(prog="attrkit", parents=[common], formatter_class=fmt, description=(
        "Explain PyTorch model predictions with attributions (gradients, relevance propagation, CAMs, Shapley "
        "values, LIME) and evaluate how far to trust them. Start with `attrkit demo`."),
        epilog=epilog("`attrkit COMMAND --help` describes each command."))
    p.add_argument("--version", action="version", version=f"attrkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    d = sub.add_parser("demo", parents=[common], formatter_class=fmt, epilog=EXIT_CODES,
                       help="the main job: load the built-in models, explain held-out samples with every method, "
                            "evaluate, write the report", description=(
                           "Load the built-in models (the zoo's shipped weights), explain held-out "
                           "samples with every method family at pixel and layer level, run the evaluation "
                           "tables, and write report.html plus PNG figures to --out."))
    d.add_argument("-o", "--out", default="demo-out", help="output folder (default: demo-out)")
    d.add_argument("--fast", action="store_true", help="fewer samples and methods settings (under 2 minutes)")
    d.add_argument("--seed", type=int, default=0, help="seed for sampled methods (default 0)")
    d.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: fastest for the demo's small models; 0 keeps torch's default)")

    e = sub.add_parser("explain", parents=[common], formatter_class=fmt,
                       help="explain your own model on images, CSV rows or arrays",
                       description="Explain a model on images (PNG/JPEG), CSV rows or a .npz; writes a heatmap PNG "
                                   "per sample and the attribution (.npz) to --out.",
                       epilog=epilog("examples:",
                                     "  attrkit explain --model model.pt --input cat.png --method grad_cam --out out/",
                                     "  attrkit explain --model net.py:Net --weights w.pt --input a.png --channels 1",
                                     "  attrkit explain --model m.pt --input rows.csv --target-column label "
                                     "--target label"))
    model_args(e)
    e.add_argument("--input", "--data", dest="input", required=True, nargs="+",
                   help="image file(s) (PNG/JPEG), one CSV file, or one .npz (several arrays = several model "
                        "inputs: named ones by keyword, arr_0, arr_1 ... by position)")
    method_args(e)
    image_args(e)
    table_args(e, columns=False)
    e.add_argument("-o", "--out", default="attrkit-out", help="output folder (default: attrkit-out)")
    e.add_argument("--mode", default="signed", choices=("signed", "positive", "negative", "absolute"),
                   help="which values the heatmap shows (default: signed)")

    t = sub.add_parser("train", parents=[common], formatter_class=fmt, epilog=EXIT_CODES,
                       help="train a model on built-in data and save it",
                       description="Train a model on a built-in data set with the lecture's loop and save it "
                                   "(attrkit.train.save format, usable by `attrkit explain --model`). "
                                   "With --zoo, load a model of the zoo (--force: re-run its recipe and rewrite "
                                   "its shipped weights).")
    t.add_argument("--data", default=None, help="digits, shapes, faces, breast_cancer, diabetes, synthetic_tabular")
    t.add_argument("--model", default=None, help="small_cnn, mlp or logistic (default: small_cnn for images, mlp "
                                                  "for tables)")
    t.add_argument("--zoo", default=None, help="a model name of attrkit.zoo to load (or rebuild with --force) instead")
    t.add_argument("--force", action="store_true", help="with --zoo: re-run the recipe and rewrite the shipped "
                                                        "weights (as make zoo)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--test-fraction", type=float, default=0.2)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("-o", "--out", default="model.pt", help="where to save the model (default: model.pt)")

    m = sub.add_parser("methods", parents=[common], formatter_class=fmt, epilog=EXIT_CODES,
                       help="list the attribution methods, or one method's options",
                       description="The registry of attribution methods: family, whether each needs gradients, "
                                   "works at a layer, uses players (coalition games) or samples. With a NAME: that "
                                   "method's options with their defaults, types and meaning (as docs/methods.md).")
    m.add_argument("name", nargs="?", default=None, help="a method name (its options) or a family")
    m.add_argument("--family", default=None, help="only this family (gradient, propagation, cam, game)")

    for mod in EXTRA:
        importlib.import_module(mod).add_parser(sub, [common])
    for name, (_mod, _fn, text) in DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)
    return p


# --------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    """Run the command line; return the exit status (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv[:argv.index("--")] if "--" in argv else "--json" in argv
    try:
        return _main(argv, as_json)
    except BrokenPipeError:            # `attrkit --json methods | head`: the reader left; say nothing more
        _quiet_stdout()
        return OK


def _main(argv: list[str], as_json: bool) -> int:
    head = 0
    while head < len(argv) and argv[head] in ("-q", "--quiet", "--json", "--no-progress"):
        head += 1
    if head < len(argv) and argv[head] in DELEGATED:
        name = argv[head]
        rest = [a for a in argv[head + 1:] if a != "--json"] + (["--json"] if as_json and name in OWN_JSON else [])
        if name in OWN_JSON:          # it reads -q / --no-progress too: hand over those given before its name
            rest = [f for f in argv[:head] if f != "--json" and f not in rest] + rest
        return _delegate(name, rest, argv[:head], as_json)
    parser = build_parser()
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        args = parser.parse_args(argv)
    except ArgumentError as err:
        return _fail(command, str(err), USAGE, as_json, usage=True)
    except SystemExit as exc:          # --help / --version
        return int(exc.code or 0)
    if not args.command:
        parser.print_help()
        return USAGE
    quiet = bool(getattr(args, "quiet", False)) or as_json
    progress = False if quiet or getattr(args, "no_progress", False) else None
    _one_line_warnings()
    fn = COMMANDS.get(args.command) or args.func
    kwargs = {"quiet": quiet}
    if "progress" in inspect.signature(fn).parameters:
        kwargs["progress"] = progress
    try:
        result = fn(args, **kwargs)
    except KeyboardInterrupt:
        return _fail(args.command, "interrupted", INTERRUPTED, as_json)
    except Exception as err:           # one line, no traceback (ATTRKIT_DEBUG=1 shows it)
        if os.environ.get("ATTRKIT_DEBUG"):
            raise
        return _fail(args.command, _one_line(err), _status(err), as_json)
    if as_json:
        print(json.dumps(jsonable(result, nonfinite_null=True)))   # NaN -> null: standard JSON
    return int(result.get("exit", OK)) if isinstance(result, dict) else OK


def _status(err) -> int:
    status = getattr(err, "exit_status", None)
    return int(status) if isinstance(status, int) else FAILED


def _fail(command, message: str, status: int, as_json: bool, usage: bool = False) -> int:
    line = message if usage else f"attrkit {command}: error: {message}" if command else f"attrkit: error: {message}"
    print(line, file=sys.stderr)
    if as_json:
        first = message.splitlines()[0] if message else ""
        print(json.dumps({"command": command, "error": first, "exit": status}))
    return status


def _quiet_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):      # pragma: no cover - stdout without a file descriptor
        pass


def _delegate(name: str, rest: list[str], flags: list[str], as_json: bool) -> int:
    mod_name, fn_name, text = DELEGATED[name]
    try:
        mod = importlib.import_module(mod_name)
        fn = getattr(mod, fn_name)
    except (ImportError, AttributeError) as err:
        if rest and rest[0] in ("-h", "--help"):
            print(f"usage: attrkit {name} ...\n\n{text}.\n\nNot available in this installation: "
                  f"{mod_name}.{fn_name} could not be imported ({_one_line(err)}).\n\n{EXIT_CODES}")
            return OK
        return _fail(name, f"this command needs {mod_name}.{fn_name}, which could not be imported "
                           f"({_one_line(err)})", FAILED, as_json)
    _one_line_warnings()
    try:
        code = fn(rest)
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else FAILED
    except KeyboardInterrupt:
        return INTERRUPTED
    except Exception as err:
        if os.environ.get("ATTRKIT_DEBUG"):
            raise
        return _fail(name, _one_line(err), FAILED, as_json)
    if any(a in ("-h", "--help") for a in rest) and not code:
        print(f"\n{EXIT_CODES}")
    if as_json and name not in OWN_JSON:
        print(json.dumps({"command": name, "exit": int(code or 0)}))
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


def _say(quiet: bool, *lines) -> None:
    if not quiet:
        for line in lines:
            print(line)


# ------------------------------------------------------------------------------------------ commands
def cmd_demo(args, quiet: bool, progress=None) -> dict:
    from .demo import run_demo
    summary = run_demo(out=args.out, fast=args.fast, seed=args.seed, progress=progress,
                       log=None if quiet else print, threads=args.threads or None)
    _say(quiet, "", f"report: {summary['report']}")
    return summary


def cmd_methods(args, quiet: bool, progress=None) -> dict:
    from .cli_io import UsageError
    from .registry import methods
    name = args.name or args.family
    try:
        table = methods(name)
    except ValueError as err:
        raise UsageError(str(err)) from None
    _say(quiet, str(table))
    if len(table) == 1 and name in table:
        spec = table[name]
        return {"methods": [spec.row()], "options": spec.option_rows()}
    return {"methods": [s.row() for s in table.values()]}


def cmd_explain(args, quiet: bool, progress=None) -> dict:
    from .api import explain
    from . import cli_inputs as io

    spec = io.method_spec(args.method)
    model = io.load_model(args.model, args.weights, trust=args.trust)
    options = io.parse_options(args.option)
    paths = [Path(p) for p in args.input]
    x, names, feature_names, labels = io.read_inputs(paths, model, args)
    classes = io.model_classes(model)
    target = io.parse_target(args.target, classes, labels)
    layer = args.layer
    if isinstance(model, io.ScriptedModel) and (layer is not None or spec.layer == "required"):
        raise CLIError("layer-level attributions need the model as an nn.Module (a file saved by "
                       "attrkit.train.save or module:factory); TorchScript models hide their layers")
    if spec.layer == "required" and layer is None and spec.default_layer is None:
        raise io.UsageError(f"method {spec.name!r} needs --layer")
    io.check_layer(model, layer)
    io.check_forward(model, x, channels_given=args.channels is not None)
    options = io.resolve_players(options, x, layer)
    a = explain(model, x, method=spec.name, target=target, layer=layer, batch_size=args.batch_size,
                seed=args.seed, progress=progress, **options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = io.unique_stems(paths)[0] if len(paths) == 1 else "batch"
    npz = a.save(out / f"{stem}_{spec.name}.npz")
    figures = io.write_figures(a, out, names, spec.name, classes, feature_names, args.mode)
    _say(quiet, f"{spec.name} on {len(a)} sample(s)" + (f" at layer {a.layer}" if a.layer else "")
         + f": {a.info.get('n_evals', '?')} model evaluations, {a.info.get('seconds', 0):.2f} s",
         *(f"  {f}" for f in figures), f"  {npz}")
    return {"method": spec.name, "layer": a.layer, "samples": names, "figures": [str(f) for f in figures],
            "attribution": str(npz), "targets": a.target if not hasattr(a.target, "tolist") else a.target.tolist(),
            "info": {k: v for k, v in a.info.items() if isinstance(v, (int, float, str, bool))}}


def cmd_train(args, quiet: bool, progress=None) -> dict:
    from . import cli_inputs as io
    if args.zoo:
        return io.train_zoo(args.zoo, force=args.force, quiet=quiet)
    if not args.data:
        from .cli_io import UsageError
        raise UsageError("give --data (a built-in data set) or --zoo NAME")
    result = io.train_model(args.data, args.model, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                            test_fraction=args.test_fraction, seed=args.seed, out=args.out, quiet=quiet)
    _say(quiet, f"saved {result['model']} trained on {result['data']} to {result['path']} "
                f"({', '.join(f'{k} {v:.3f}' for k, v in result['held_out'].items())} on held-out data)")
    return result


COMMANDS = {"demo": cmd_demo, "methods": cmd_methods, "explain": cmd_explain, "train": cmd_train}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
