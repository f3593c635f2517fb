"""Output for people (rich tables) and for scripts (--json), and shared option parsing."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from o11n.client import Client

# Scripts and pipes get full cells, not cells cut to 80 columns.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
JsonOption = typer.Option(False, "--json", help="Print JSON for scripts.")


def client(ctx: typer.Context) -> Client:
    """The API client for this invocation (from --server/--token or the environment)."""
    obj = ctx.obj or {}
    return Client(obj.get("server"), obj.get("token"))


def print_json(value: Any) -> None:
    """JSON on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A plain table on stdout."""
    out = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(out)


def pairs(values: list[str] | None, what: str) -> dict[str, str]:
    """KEY=VALUE options as a dict; a malformed one is a usage error."""
    result = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} {value!r} must look like KEY=VALUE")
        result[key] = val
    return result


def ago(timestamp: float | None) -> str:
    """How long ago, briefly: 3s, 5m, 2h, 4d."""
    if timestamp is None:
        return ""
    seconds = max(0.0, time.time() - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f}{unit}"
    return f"{seconds:.0f}s"


def clock(timestamp: float | None) -> str:
    """A timestamp as local date and time."""
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))
