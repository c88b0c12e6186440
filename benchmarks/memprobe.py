"""``python -m benchmarks.memprobe CASE LABEL [--quick]``: peak RSS of one run in this fresh process.

Builds the case, sets up the implementation (untimed), then measures one run with
:func:`benchmarks.measure.measure_peak` and prints one JSON line. The figure includes the one-time
initialisation a first call does (thread pools, kernel caches): a few MB.
"""
from __future__ import annotations

import json
import sys

from .measure import measure_peak
from .runner import Config
from .workloads import find


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quick = "--quick" in argv
    args = [a for a in argv if a != "--quick"]
    if len(args) != 2:
        print("usage: python -m benchmarks.memprobe CASE LABEL [--quick]", file=sys.stderr)
        return 2
    case = find(args[0], Config(quick=quick, memory=False, progress=False))
    if case.prepare is not None:
        case.extra.update(case.prepare())
    run = case.impl(args[1]).make()
    print(json.dumps(measure_peak(run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
