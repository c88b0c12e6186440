"""One flag vocabulary for every ``attrkit`` subcommand, and the exit-status table their ``--help`` shows.

Each subcommand builds its parser from these groups, so a flag means the same everywhere: ``--model``
(zoo name, model file or ``module:Factory``) with ``--weights`` and ``--trust``; ``--method/-m``,
``--option/-O KEY=VALUE``, ``--layer``, ``--target``; ``--size``, ``--mean``, ``--std``, ``--channels``
(``--grayscale`` = ``--channels 1``); ``--target-column``, ``--id-column``; ``--out/-o``;
``--json``, ``-q/--quiet``, ``--no-progress``.
"""
from __future__ import annotations

import argparse

OK, FAILED, USAGE, STRICT, INTERRUPTED = 0, 1, 2, 3, 130

EXIT_CODES = """exit status:
  0    done
  1    failed: a model or data file could not be read, the model or a method refused the input
       (one line on stderr; ATTRKIT_DEBUG=1 shows the traceback)
  2    usage error: unknown flag, missing or malformed value, unknown method, metric, layer or class name
  3    finished, but bad records were skipped and --strict was given (attrkit run)
  130  interrupted
With --json (before or after the subcommand) the result is one JSON object on stdout; an error is too:
{"error": "...", "exit": N}."""


def epilog(*lines: str) -> str:
    """A subcommand's epilog: its own lines, then the exit-status table."""
    return "\n".join([*lines, "", EXIT_CODES]) if lines else EXIT_CODES


def output_parent() -> argparse.ArgumentParser:
    """``--json``, ``-q/--quiet``, ``--no-progress``: accepted before and after the subcommand."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print one JSON object with the results (or the error) on stdout")
    g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bars and no summary (errors are still printed)")
    g.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    return p


def model_args(p, required: bool = True, default: str | None = None):
    g = p.add_argument_group("model")
    g.add_argument("--model", required=required and default is None, default=default,
                   help="a zoo name (e.g. shapes_cnn), a model file (attrkit.train.save, TorchScript, or "
                        "torch.save(model) with --trust), or module:Factory / path/file.py:Factory"
                        + (f" (default: {default})" if default else ""))
    g.add_argument("--weights", default=None, help="state-dict file (.pt or .safetensors) for a module:Factory model")
    g.add_argument("--trust", action="store_true",
                   help="allow a model file that holds pickled code (torch.save(model)); it runs that code")
    return g


def method_args(p, default: str = "integrated_gradients", one: bool = True):
    g = p.add_argument_group("method")
    if one:
        g.add_argument("-m", "--method", default=default, help=f"attribution method (default: {default}; see "
                                                                "`attrkit methods`)")
    g.add_argument("-O", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option, repeatable: -O steps=64 -O baseline=blur -O players=superpixels:50 "
                        "(players=grid:K also at a layer); `attrkit methods NAME` lists them")
    g.add_argument("--layer", default=None, help="attribute at this layer (a name from model.named_modules())")
    g.add_argument("--target", default=None, help="class index or name, 'label' (the data's labels) or "
                                                  "'predicted' (default)")
    g.add_argument("--seed", type=int, default=0, help="seed for sampled methods (default 0)")
    g.add_argument("--batch-size", type=int, default=None, help="rows per model call")
    return g


def image_args(p):
    g = p.add_argument_group("images")
    g.add_argument("--size", default=None, help="resize images to N or HxW pixels (default: the model's size)")
    g.add_argument("--mean", default=None, help="per-channel mean to subtract after scaling to [0, 1], e.g. "
                                                "0.485,0.456,0.406")
    g.add_argument("--std", default=None, help="per-channel std to divide by, e.g. 0.229,0.224,0.225")
    g.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="read images as 1 (grey) or 3 (RGB) channels (default: what the model's first conv takes)")
    g.add_argument("--grayscale", dest="channels", action="store_const", const=1, help="same as --channels 1")
    return g


def table_args(p, columns: bool = True):
    g = p.add_argument_group("tables (CSV)")
    if columns:
        g.add_argument("--columns", default=None, help="feature columns a,b,c (default: all but target and id)")
    g.add_argument("--target-column", default=None, help="the label column (left out of the features; "
                                                         "--target label uses it)")
    g.add_argument("--id-column", default=None, help="the sample id column (default: the row number)")
    return g


def formatter():
    return argparse.RawDescriptionHelpFormatter
