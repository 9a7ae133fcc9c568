"""What a lesson's figures and tables show, carried with the output that shows them.

A lesson's sentence such as "the unacked line rises while the countdown waits" must hold on every run, so a test
checks it. The data behind it travels in the output itself: every course figure (`plots.CourseFigure`) and every
table shown with `facts.table(df, name)` puts, in its output's metadata under `KEY`, the data it draws (series,
bars, marks, rows) and, for figures, its layout checks. JupyterLab ignores that metadata; the notebook test runs
the lesson, reads it back with `read(nb)` and asserts each sentence on it.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import pandas as pd

KEY = "coursekit"


def jsonable(value):
    """`value` with numpy and pandas scalars made plain, NaN and NaT made None, tuples made lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray, pd.Series)):
        return [jsonable(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NaT or value is None:
        return None
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class Table:
    """A DataFrame shown as pandas shows it, with its rows kept in the output's metadata under `name`. `wide`:
    long texts shown whole (pandas cuts them at 50 characters)."""

    def __init__(self, df: pd.DataFrame, name: str, wide: bool = False):
        self.df, self.name, self.wide = df, name, wide

    def facts(self) -> dict:
        index = [n for n in self.df.index.names if n is not None]
        rows = self.df.reset_index() if index else self.df
        return jsonable({"name": self.name, "kind": "table", "columns": list(rows.columns),
                         "rows": rows.to_dict(orient="records")})

    def _repr_mimebundle_(self, include=None, exclude=None):
        with pd.option_context("display.max_colwidth", None) if self.wide else contextlib.nullcontext():
            data = {"text/plain": repr(self.df)}
            html = self.df._repr_html_()
        if html:
            data["text/html"] = html
        return data, {KEY: self.facts()}

    def __repr__(self) -> str:
        return repr(self.df)


def table(df: pd.DataFrame, name: str, wide: bool = False) -> Table:
    """Show `df` as a table whose rows the lesson's tests can read back by `name` (`wide`: long texts whole)."""
    return Table(df, name, wide)


def read(nb) -> dict[str, dict]:
    """Every figure's and table's facts in an executed notebook, by name. Two outputs with one name are an error:
    a test could not tell which one a sentence is about."""
    found: dict[str, dict] = {}
    for index, cell in enumerate(nb.cells, start=1):
        for output in cell.get("outputs", []):
            entry = output.get("metadata", {}).get(KEY)
            if not entry:
                continue
            name = entry["name"]
            if name in found:
                raise ValueError(f"two outputs are named {name!r} (the second in cell {index}): name each one")
            found[name] = {**entry, "cell": index}
    return found
