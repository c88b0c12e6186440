"""``attrkit bench``: run workloads of the benchmark suite by name (``attrkit bench W1 W3a --quick``).

The suite lives in the source tree's ``benchmarks/`` package (``make bench`` runs all of it and writes
docs/benchmarks.md); it is not installed with the wheel, so this command works from a checkout
(an editable install). A subset's results go to ``bench-out/`` unless ``--out`` says otherwise.
"""
from __future__ import annotations

import importlib
import os
import sys


def _suite():
    """The ``benchmarks.cli`` module of this checkout."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isfile(os.path.join(root, "benchmarks", "cli.py")):
        raise RuntimeError("attrkit bench needs a source checkout of attrkit (the benchmarks/ folder is not "
                           "installed with the package): clone the repository, `pip install -e .[all,bench]`, "
                           "then run `attrkit bench` or `make bench` there")
    if root not in sys.path:
        sys.path.insert(0, root)
    mod = importlib.import_module("benchmarks.cli")
    if not os.path.abspath(mod.__file__).startswith(os.path.join(root, "benchmarks")):
        raise RuntimeError(f"another package named 'benchmarks' shadows attrkit's suite: {mod.__file__}")
    return mod


def main(argv=None) -> int:
    """Run ``python -m benchmarks`` with ``argv`` (workload names W1..W9 or case ids, ``--quick``, ``--list``,
    ``--repeats N``, ``--no-memory``, ``--out DIR``); returns the exit code."""
    try:
        suite = _suite()
    except RuntimeError as e:
        print(f"attrkit bench: {e}", file=sys.stderr)
        return 2
    return suite.main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
