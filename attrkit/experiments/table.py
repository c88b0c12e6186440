"""The experiments' result: :class:`Table`, a list of dict rows with a title, settings, run time and notes, that
prints as Markdown, saves as CSV (and a figure) and becomes a pandas DataFrame."""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np


class Table(list):
    """A tidy table: a list of dict rows plus ``name``, ``title``, ``settings``, ``seconds`` and ``notes``."""

    def __init__(self, rows: Iterable[dict] = (), *, name: str = "", title: str = "", settings: dict | None = None,
                 seconds: float | None = None, notes: Sequence[str] = (), plot: Callable | None = None):
        super().__init__(dict(r) for r in rows)
        self.name, self.title = name, title
        self.settings = dict(settings or {})
        self.seconds = seconds
        self.notes = list(notes)
        self._plot = plot
        self.description = ""

    @property
    def columns(self) -> list[str]:
        cols: list[str] = []
        for r in self:
            cols += [k for k in r if k not in cols]
        return cols

    def column(self, key: str) -> list:
        return [r.get(key) for r in self]

    def where(self, **match) -> "Table":
        """The rows whose fields equal ``match``."""
        return Table([r for r in self if all(r.get(k) == v for k, v in match.items())], name=self.name,
                     title=self.title, settings=self.settings, seconds=self.seconds, notes=self.notes)

    def to_frame(self):
        """A pandas DataFrame (``attrs`` keep title, settings, seconds and notes)."""
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError("as_frame=True needs pandas (`pip install pandas`)") from err
        df = pd.DataFrame(list(self), columns=self.columns)
        df.attrs.update({"name": self.name, "title": self.title, "settings": self.settings,
                         "seconds": self.seconds, "notes": self.notes})
        return df

    def to_markdown(self, digits: int = 3, header: bool = True) -> str:
        cols = self.columns
        lines = []
        if header and self.title:
            lines.append(f"### {self.title}\n")
        if not self:
            lines.append("(no rows)")
        else:
            lines.append("| " + " | ".join(cols) + " |")
            lines.append("|" + "|".join("---" for _ in cols) + "|")
            for r in self:
                lines.append("| " + " | ".join(_fmt(r.get(c), digits) for c in cols) + " |")
        return "\n".join(lines)

    def save(self, csv_path, figure_path=None) -> Path:
        """Write the rows as CSV (and the table's figure when ``figure_path`` is given, needs matplotlib)."""
        path = Path(csv_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cols = self.columns
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            for r in self:
                w.writerow({c: r.get(c) for c in cols})
        if figure_path is not None:
            self.figure(figure_path)
        return path

    def figure(self, path=None):
        """The table's figure (a matplotlib Figure), saved to ``path`` when given."""
        from ..viz._mpl import save_figure
        fig = (self._plot or bar_plot)(self)
        return save_figure(fig, path)

    def __repr__(self) -> str:
        return f"Table({self.name!r}, {len(self)} rows, columns={self.columns})"


def _fmt(v, digits: int) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "nan"
        if v != 0 and (abs(v) >= 10 ** 5 or abs(v) < 10 ** -digits):
            return f"{v:.{digits}g}"
        return f"{v:.{digits}f}"
    return str(v)


def _numeric_cols(table: Table) -> list[str]:
    return [c for c in table.columns if all(isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)
                                            for v in table.column(c) if v is not None)
            and any(v is not None for v in table.column(c))]


def _label_cols(table: Table) -> list[str]:
    num = set(_numeric_cols(table))
    return [c for c in table.columns if c not in num]


def bar_plot(table: Table, metrics: Sequence[str] | None = None):
    """Grouped horizontal bars: one group per row (labelled by its text fields), one bar per metric."""
    from ..viz._mpl import new_figure
    metrics = list(metrics or [c for c in _numeric_cols(table) if not c.startswith("seconds")
                               and c not in ("n", "stage", "n_players", "n_evals")][:4])
    labels = [" / ".join(str(r.get(c)) for c in _label_cols(table) if r.get(c) is not None) for r in table]
    fig = new_figure(7.0, max(2.5, 0.28 * len(table) * max(1, len(metrics)) ** 0.5 + 1))
    ax = fig.add_subplot(1, 1, 1)
    h = 0.8 / max(1, len(metrics))
    ys = np.arange(len(table))
    for k, m in enumerate(metrics):
        vals = [np.nan if r.get(m) is None else float(r.get(m)) for r in table]
        ax.barh(ys + k * h, vals, height=h, label=m)
    ax.set_yticks(ys + h * (len(metrics) - 1) / 2, labels, fontsize=7)
    ax.invert_yaxis()
    ax.legend(fontsize=7)
    ax.set_title(table.title, fontsize=9)
    return fig


def finish_table(rows, name, title, settings, start, notes, as_frame, plot=None):
    t = Table(rows, name=name, title=title, settings=settings, seconds=time.perf_counter() - start, notes=notes,
              plot=plot)
    if not t:
        raise RuntimeError(f"experiment {name} produced no rows: {'; '.join(notes) or 'no method could run'}")
    return t.to_frame() if as_frame else t

