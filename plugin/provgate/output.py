"""Output: decision records as a table, a JSON array, NDJSON or CSV, as they come; the
progress bar and the summary line. The CLI's formatting, kept apart from its options."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from typing import Any

import click

from provgate.record import Brief
from provgate.session import summarize

CSV_FIELDS = ("id", "path", "kind", "c2pa", "zone", "action", "rule", "reason", "approval_ref",
              "fingerprint", "size", "error", "outcome", "evidence")


def progress(enabled: bool, paths: Iterable[str] = ()) -> Callable[[int], None] | None:
    """A bar on stderr while machine output goes to stdout. The total is counted by a quick
    walk beside the scan (names only); until it is known, a counter."""
    if not enabled:
        return None
    import threading

    seen, total = [0], [0]

    def count() -> None:
        n = 0
        for p in paths:
            n += sum(len(f) for _, _, f in os.walk(p)) if os.path.isdir(p) else 1
        total[0] = n
    threading.Thread(target=count, daemon=True).start()

    def tick(n: int) -> None:
        seen[0] += n
        if total[0] >= seen[0]:
            done = seen[0] / max(total[0], 1)
            bar = "#" * int(done * 30)
            click.echo(f"\rprovgate: [{bar:<30}] {seen[0]}/{total[0]} files", nl=False,
                       err=True)
        else:
            click.echo(f"\rprovgate: {seen[0]} files...", nl=False, err=True)
    return tick


def print_records(records: Iterable[dict[str, Any]], fmt: str | None) -> None:
    printer = Printer(fmt)
    for r in records:
        printer.emit(r)
    printer.finish()

# made once: json.dumps builds an encoder per call, and a scan prints one record per file
_JSON = json.JSONEncoder(ensure_ascii=False, default=str)


class Printer:
    """Records out as they come: a table, a JSON array, NDJSON or CSV."""

    colour = {"block": "red", "escalate": "yellow", "flag": "cyan", "allow": "green"}

    def __init__(self, fmt: str | None) -> None:
        self.fmt = fmt
        self.count = 0
        self.width = shutil.get_terminal_size((140, 20)).columns
        self.csv = csv_writer(sys.stdout, CSV_FIELDS) if fmt == "csv" else None

    def emit(self, r: dict[str, Any]) -> None:
        first = self.count == 0
        self.count += 1
        if self.fmt in ("json", "ndjson"):
            # one record a line: json's C encoder (indent= falls back to pure Python)
            line = _JSON.encode(r)
            if self.fmt == "json":
                line = ("[\n" if first else ",\n") + line
                click.echo(line, nl=False)
            else:
                click.echo(line)
        elif self.csv is not None:
            if first:
                self.csv.writeheader()
            self.csv.writerow({**r, "approval_ref": (r.get("approval") or {}).get("ref") or
                               r.get("approval_ref"), "evidence": json.dumps(r["evidence"])})
        elif self.fmt is None:
            if first:
                click.echo(f"{'ACTION':<9} {'KIND':<13} {'C2PA':<16} {'ZONE':<9} PATH / WHY")
            action = click.style(f"{r['action']:<9}", fg=self.colour[r["action"]])
            click.echo(f"{action} {r['kind']:<13} {r.get('c2pa') or '-':<16} {r['zone']:<9} "
                       f"{display_path(r['path'])}")
            reason = why(r)
            if reason:
                click.echo(" " * 50 + reason[: max(40, self.width - 50)])

    def finish(self) -> None:
        if self.fmt == "json":
            click.echo("\n]" if self.count else "[]")
        elif self.fmt is None and not self.count:
            click.echo("no files found")
        elif self.csv is not None and not self.count:
            self.csv.writeheader()


def csv_writer(out: Any, fields: tuple[str, ...]) -> Any:
    """A CSV writer whose cells a spreadsheet shows as text: a value a vendor controls (a
    file name, a text field) that starts like a formula (``=``, ``+``, ``-``, ``@``, a tab
    or a carriage return) gets a leading ``'``, so opening the report runs nothing."""
    import csv  # only CSV output needs it

    class _Writer(csv.DictWriter):
        def writerow(self, rowdict: Any) -> Any:
            return super().writerow({k: _cell(v) for k, v in rowdict.items()})

    return _Writer(out, fields, extrasaction="ignore", lineterminator="\n")


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def why(r: dict[str, Any]) -> str:
    if r.get("error"):
        return f"error: {r['error']}"
    if r.get("approval"):
        return f"approved: {r['approval']['ref']} by {r['approval']['by']}"
    if r.get("unit"):  # a sequence: its frames' kinds and evidence, as ranges
        return "; ".join(r["evidence"][:3])
    e = next((e for e in r["evidence"] if e["kind"] == r["kind"]), None)
    if e:
        return f"{e['meaning']} [{e['tag']}]"
    return ""


def display_path(path: str) -> str:
    rel = os.path.relpath(path)
    shown = path if rel.startswith("..") else rel
    return shown.encode("utf-8", "backslashreplace").decode("utf-8").replace("\n", "\\n")


def summary_line(records: list[Brief], sequences: int = 0) -> str:
    s = summarize(records)
    parts = [f"{n} {a}" for a, n in sorted(s["actions"].items())]
    extra = f", {s['approved']} by approval" if s["approved"] else ""
    extra += (f" (shown as {sequences} sequence{'s' * (sequences != 1)} or packages)"
              if sequences else "")
    return f"provgate: {s['files']} files: {', '.join(parts) or 'nothing to do'}{extra}"
