"""Output: Rich tables for people, the API's JSON for scripts (``--json`` prints nothing else on stdout)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

PIPED_WIDTH = 200


def console() -> Console:
    """A stdout console made per call (tests swap sys.stdout); piped output is not wrapped at 80 columns."""
    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = PIPED_WIDTH
    return out


def print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _cell(value: object) -> Text:
    """Cells are Text, never markup: a value like ``[secret]`` must print as written."""
    return Text("" if value is None else str(value))


COPIED_WHOLE = frozenset({"ID"})


def print_table(columns: Sequence[str], rows: Iterable[Sequence[object]], *, empty: str) -> None:
    rows = list(rows)
    if not rows:
        typer.echo(empty)
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for index, column in enumerate(columns):
        if column in COPIED_WHOLE:  # an id is pasted into the next command: never wrapped, other columns give way
            widest = max((len(str(row[index])) for row in rows if row[index] is not None), default=len(column))
            table.add_column(column, no_wrap=True, min_width=max(widest, len(column)))
        else:
            table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    console().print(table)


def print_details(pairs: Iterable[tuple[str, object]]) -> None:
    """Key/value lines, keys aligned; empty values are left out."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in pairs:
        if value not in (None, ""):
            table.add_row(_cell(key), _cell(value))
    console().print(table)


def timestamp(value: object) -> str:
    """API times are RFC 3339 strings or epoch seconds (tokens); show both the same way, in UTC."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, str) and value:
        return value.replace("T", " ").split(".")[0].rstrip("Z") + "Z"
    return ""
