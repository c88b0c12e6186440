"""``python -m attrkit.experiments``: recompute the tables of ``docs/results.md``.

``--all`` (or no names) runs the five tables of the thesis' chapter 3 and rewrites ``results.md``;
``text_rationale`` and ``vit_specificity`` replace their own sections at its end.
"""
from __future__ import annotations

import argparse
import logging

from . import __doc__ as package_doc
from .results import EXPERIMENTS, run_all
from .text import text_section
from .vit import vit_section

SECTIONS = {"text_rationale": text_section, "vit_specificity": vit_section}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m attrkit.experiments", description=package_doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"what to run: {', '.join(EXPERIMENTS + tuple(SECTIONS))}")
    p.add_argument("--all", action="store_true", help=f"run {', '.join(EXPERIMENTS)}")
    p.add_argument("--out", default=None, help="folder for results.md")
    p.add_argument("--files", action="store_true", help="also write <name>.csv and <name>.png")
    p.add_argument("--quick", action="store_true", help="tiny settings (a smoke test)")
    p.add_argument("--n", type=int, default=None, help="text_rationale: sentences (default 200); vit_specificity: "
                                                       "images (default 32)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    names = list(EXPERIMENTS) if args.all or not args.names else args.names
    bad = [n for n in names if n not in EXPERIMENTS and n not in SECTIONS]
    if bad:
        p.error(f"unknown experiment(s) {bad}; choose from {', '.join(EXPERIMENTS + tuple(SECTIONS))}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    body = [n for n in names if n in EXPERIMENTS]
    if body:
        tables = run_all(body, out=args.out, quick=args.quick, files=args.files,
                         progress=False if args.no_progress else None)
        for t in tables:
            print(f"## {t.title} ({t.seconds:.1f} s)")
            print(t.to_markdown(header=False))
            print()
    for name in (n for n in names if n in SECTIONS):
        markdown, path = SECTIONS[name](args.out, quick=args.quick, n=args.n)
        print(markdown)
        if path is not None:
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
