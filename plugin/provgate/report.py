"""Report: the AI-use disclosure a studio asks for, built from the ledger alone.

One model (``build``), three forms: a self-contained HTML page (no network: styles inline,
thumbnails as data: URIs, a Content-Security-Policy that forbids any fetch), CSV, and JSON valid
against ``schemas/report.schema.json``. The report describes each file's latest decision; the
older rows stay in the ledger's chain, whose verification the report states.

The ledger is data, never markup: whoever can write the ledger file can put anything in any
column. Every value from it is escaped for its context (text and attribute values alike), class
names come from a fixed list (a kind or action not on it gets ``other``), and the page's
Content-Security-Policy runs no script at all: no ``<script>``, no inline handler, only the
page's own stylesheet (by its hash) and ``data:`` images that Pillow decoded and re-encoded.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import socket
import string
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from provgate import __version__
from provgate.assets import Asset
from provgate.data import PACKAGE_DIR
from provgate.ledger import Ledger, now_iso
from provgate.policy import Approval

KINDS = ("ai_generated", "ai_composite", "ai_possible", "algorithmic", "human", "unknown",
         "unreadable")
ACTIONS = ("block", "escalate", "flag", "allow")
CSV_FIELDS = ("id", "time", "path", "kind", "c2pa", "zone", "action", "reason",
              "approval_state", "approval_ref", "quarantine_state", "quarantined_path",
              "fingerprint", "size", "error", "evidence")
THUMB_PX = 160
THUMB_MAX_BYTES = 256 << 20  # larger images are named, not decoded, to keep a report quick
NEUTRAL_CLASS = "other"  # the CSS class of a kind or action that is not one of ours
_STYLE_HASH = "'sha256-STYLE'"  # in the template's CSP until the page's <style> is hashed


def record(row: dict[str, Any], approvals: dict[int, Approval] | None = None) -> dict[str, Any]:
    """A ledger row as a decision record (schemas/decision.schema.json)."""
    appr = (approvals or {}).get(row["approval_id"]) if row["approval_id"] else None
    approval = ({"id": row["approval_id"], "ref": row["approval_ref"],
                 "by": appr.approver if appr else "", "expires": appr.expires if appr else None}
                if row["approval_id"] else None)
    return {**row, "approval": approval, "warnings": [], "outcome": None}


def build(ledger: Ledger, since: str | None = None, path: str | None = None,
          zone: str | None = None, thumbnails: int = 200,
          delivery: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report as data: what the ledger says now about each file in the filter, or, for
    a ``delivery`` record, about each file of that delivery as that check decided it (a
    later check of a subfolder or of another delivery changes nothing in it)."""
    count, broken, message = ledger.verify()
    approvals = {a.id: a for a in ledger.approvals()}
    # every row, verified or not: a broken ledger is reported as broken, with what it holds
    moves = {m["decision_id"]: m for m in ledger.moves(verified=False)}
    departures = {e["path"]: e for e in ledger.events()}  # the latest per path wins
    now = datetime.now(timezone.utc)
    files = []
    for row in _rows(ledger, since, path, zone, delivery):
        rec = record(row, approvals)
        rec["approval_state"] = approval_state(rec, approvals.values(), now)
        move = moves.get(rec["id"])
        rec["quarantine"] = ({k: move[k] for k in ("id", "state", "quarantined_path",
                                                   "receipt_path", "updated", "error")}
                             if move else None)
        gone = departures.get(rec["path"])
        if gone and gone["time"] > rec["time"]:
            rec["departed"] = {k: gone[k] for k in ("event", "time", "dest")}
        files.append(rec)
    _add_thumbnails(files, thumbnails)
    return {
        "report": {"title": "Generative AI disclosure", "generated": now_iso(),
                   "host": socket.gethostname(), "provgate": __version__,
                   "ledger": str(ledger.path),
                   "filters": {"since": since, "path": path, "zone": zone,
                               "delivery": delivery["name"] if delivery else None},
                   "delivery": {k: delivery[k] for k in ("id", "name", "time", "verdict",
                                                         "files", "held")} if delivery else None,
                   "chain": {"intact": broken is None, "decisions": count,
                             "message": message}},
        "totals": _totals(files),
        "files": files,
    }


def _rows(ledger: Ledger, since: str | None, path: str | None, zone: str | None,
          delivery: dict[str, Any] | None) -> Iterable[dict[str, Any]]:
    if delivery is None:
        return ledger.decisions(since=since, path=path, zone=zone, latest=True)
    ids = sorted(f["id"] for f in json.loads(delivery["decisions"]).values() if f.get("id"))
    rows = (ledger.decision(i) for i in ids)
    return [r for r in rows if r is not None and (not zone or r["zone"] == zone)]


def approval_state(rec: dict[str, Any], approvals: Iterable[Approval], now: datetime) -> str:
    """Where the written approval stands today, not only when the file was decided."""
    if rec["approval_id"]:
        appr = next((a for a in approvals if a.id == rec["approval_id"]), None)
        if appr is None or appr.active(now):
            return "approved"
        return "approval revoked" if appr.revoked else "approval expired"
    if rec["action"] not in ("escalate", "block"):
        return "not needed"
    asset = Asset(rec["path"], rec.get("root") or "", fingerprint=rec["fingerprint"])
    if any(a.active(now) and a.covers(asset) for a in approvals):
        return "approved since the decision (the next scan records it)"
    return "awaiting written approval" if rec["action"] == "escalate" else "not approved"


def _totals(files: list[dict[str, Any]]) -> dict[str, Any]:
    pairs = Counter((f["kind"], f["action"]) for f in files)
    kinds, actions = Counter(f["kind"] for f in files), Counter(f["action"] for f in files)
    return {
        "files": len(files),
        "by_kind": {k: kinds[k] for k in KINDS if kinds[k]},
        "by_action": {a: actions[a] for a in ACTIONS if actions[a]},
        "by_kind_action": {f"{k}/{a}": n for (k, a), n in sorted(pairs.items())},
        "quarantined": sum(1 for f in files if (f["quarantine"] or {}).get("state") == "done"),
        "approved": sum(1 for f in files if f["approval_state"] == "approved"),
        "departed": sum(1 for f in files if f.get("departed")),
    }


# -- thumbnails ------------------------------------------------------------------------------

def _add_thumbnails(files: list[dict[str, Any]], limit: int) -> None:
    """Small JPEG data: URIs for the files that matter to the studio (not plain allows), where
    Pillow is installed and the file on disk is still the one decided (same size)."""
    try:
        from PIL import Image
    except ImportError:
        return
    made = 0
    for f in files:
        if made >= limit or f["action"] == "allow" or f["kind"] == "unreadable":
            continue
        uri = _thumbnail(Image, _where_now(f), f["size"])
        if uri:
            f["thumbnail"] = uri
            made += 1


def _where_now(f: dict[str, Any]) -> str:
    q = f["quarantine"] or {}
    return q["quarantined_path"] if q.get("state") == "done" else f["path"]


def _thumbnail(image_module: Any, path: str, size: int | None) -> str | None:
    try:
        if size is None or size > THUMB_MAX_BYTES or os.path.getsize(path) != size:
            return None
        with image_module.open(path) as im:
            im.draft("RGB", (THUMB_PX * 2, THUMB_PX * 2))  # JPEG: decode at reduced size
            im.thumbnail((THUMB_PX, THUMB_PX))
            out = io.BytesIO()
            im.convert("RGB").save(out, "JPEG", quality=70)
        with image_module.open(io.BytesIO(out.getvalue())) as check:
            check.load()  # what the page embeds decodes: no script is needed to hide a broken one
    except Exception:  # noqa: BLE001 - video, PDF, damaged or vanished: no thumbnail
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


# -- HTML ------------------------------------------------------------------------------------

def to_html(report: dict[str, Any]) -> str:
    """One self-contained page; every value from the ledger is escaped."""
    template = string.Template((PACKAGE_DIR / "report.html").read_text(encoding="utf-8"))
    meta, totals, files = report["report"], report["totals"], report["files"]
    page = template.substitute(
        style_hash=_STYLE_HASH,
        title=_e(meta["title"]), meta=_meta(meta), totals=_totals_html(totals),
        escalations=_table(
            [f for f in files if f["action"] == "escalate"],
            ("path", "kind", "approval_state", "approval_ref", "reason"),
            "No file needs written approval."),
        blocked=_table(
            [f for f in files if f["action"] == "block"],
            ("path", "kind", "quarantine_state", "quarantined_path", "reason"),
            "No file is blocked."),
        flagged=_table([f for f in files if f["action"] == "flag"],
                       ("path", "kind", "zone", "reason"), "No AI use to disclose."),
        files="\n".join(_file_html(f) for f in files) or "<p>No decisions match.</p>")
    # the CSP (in <head>, before any ledger value) names the hash of the page's own <style>
    return page.replace(_STYLE_HASH, _style_hash(page), 1)


def _e(value: Any) -> str:
    """A value as HTML text or a quoted attribute value: & < > " ' all escaped."""
    return html.escape("" if value is None else str(value), quote=True)


def _css(value: Any, allowed: tuple[str, ...]) -> str:
    """A class name for a ledger value: the value itself only when it is one of ``allowed``."""
    return value if isinstance(value, str) and value in allowed else NEUTRAL_CLASS


def _style_hash(page: str) -> str:
    """The CSP source that lets the page's own (first) <style> element apply, and nothing else."""
    start = page.index("<style>") + len("<style>")
    css = page[start:page.index("</style>", start)]
    return "'sha256-" + base64.b64encode(hashlib.sha256(css.encode()).digest()).decode() + "'"


def _evidence(value: Any) -> list[dict[str, Any]]:
    """The evidence column as rows of signals, whatever shape a hand-edited ledger gave it."""
    items = value if isinstance(value, list) else [] if value in (None, "") else [value]
    return [item if isinstance(item, dict) else {"value": item} for item in items]


def _meta(meta: dict[str, Any]) -> str:
    chain = meta["chain"]
    state = "intact" if chain["intact"] else "BROKEN"
    filters = ", ".join(f"{k} {v}" for k, v in meta["filters"].items() if v) or "none"
    rows = [("Generated", meta["generated"]), ("Host", meta["host"]),
            ("Ledger", meta["ledger"]), ("Filters", filters),
            ("provgate", meta["provgate"])]
    if meta.get("delivery"):
        d = meta["delivery"]
        rows.insert(0, ("Delivery", f"{d['name']} (#{d['id']}), checked {d['time'][:19]}: "
                                    f"{d['verdict']}, {d['files']} files, {d['held']} held"))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return (f'{body}<tr><th>Ledger chain</th><td class="chain-{state.lower()}" id="chain">'
            f"{state}: {_e(chain['message'])}</td></tr>")


def _totals_html(totals: dict[str, Any]) -> str:
    head = "".join(f"<th>{a}</th>" for a in ACTIONS)
    rows = []
    for k in KINDS:
        cells = [totals["by_kind_action"].get(f"{k}/{a}", 0) for a in ACTIONS]
        if any(cells):
            rows.append(f'<tr><th class="kind {k}">{k}</th>' +
                        "".join(f"<td>{c or ''}</td>" for c in cells) +
                        f"<td>{sum(cells)}</td></tr>")
    foot = "".join(f"<td>{totals['by_action'].get(a, 0)}</td>" for a in ACTIONS)
    return (f'<table id="totals"><tr><th>kind</th>{head}<th>all</th></tr>{"".join(rows)}'
            f'<tr class="sum"><th>all</th>{foot}<td>{totals["files"]}</td></tr></table>'
            f'<p id="summary">{totals["files"]} files, {totals["quarantined"]} quarantined, '
            f'{totals["approved"]} under written approval, '
            f'{totals["departed"]} removed or moved since.</p>')


def _cell(f: dict[str, Any], col: str) -> str:
    q = f["quarantine"] or {}
    unmoved = "not moved" + (f" ({f['mode']} mode)" if f.get("mode") != "enforce" else "")
    value = {"quarantine_state": q.get("state") or unmoved,
             "quarantined_path": q.get("quarantined_path")}.get(col, f.get(col))
    return f'<td class="{col}">{_e(value)}</td>'


def _table(rows: list[dict[str, Any]], cols: tuple[str, ...], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in cols)
    body = "".join("<tr>" + "".join(_cell(f, c) for c in cols) + "</tr>" for f in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _file_html(f: dict[str, Any]) -> str:
    # a thumbnail is only ever made here (Pillow, re-encoded, decoded again): a data: URI
    thumb = (f'<img class="thumb" alt="" src="{_e(f["thumbnail"])}">'
             if str(f.get("thumbnail") or "").startswith("data:image/jpeg;base64,") else "")
    evidence = "".join(
        "<tr>" + "".join(f"<td>{_e(s.get(k))}</td>"
                         for k in ("kind", "source", "tag", "value", "meaning")) + "</tr>"
        for s in _evidence(f["evidence"]))
    evidence = (f"<table><tr><th>signal</th><th>source</th><th>tag</th><th>value</th>"
                f"<th>meaning</th></tr>{evidence}</table>" if evidence else
                "<p>No provenance signal: origin unknown, never a clean bill.</p>")
    error = f'<p class="error">error: {_e(f["error"])}</p>' if f["error"] else ""
    gone = f.get("departed")
    if gone:
        where = f" to {_e(gone['dest'])}" if gone["dest"] else " from the watched folders"
        error += f'<p class="departed">{_e(gone["event"])}{where} at {_e(gone["time"])}</p>'
    return (f'<details class="file {_css(f["action"], ACTIONS)}" data-id="{_e(f["id"])}">'
            f'<summary><span class="action">{_e(f["action"])}</span> '
            f'<span class="kind {_css(f["kind"], KINDS)}">{_e(f["kind"])}</span> '
            f'<span class="path">{_e(f["path"])}</span></summary>{thumb}'
            f"<p>{_e(f['reason'])}</p>{error}<p>C2PA: {_e(f['c2pa'])}; zone {_e(f['zone'])}; "
            f"{_e(f['fingerprint'])}; decision #{_e(f['id'])} at {_e(f['time'])}</p>"
            f"{evidence}</details>")


def csv_rows(report: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """One flat row per file for spreadsheets."""
    import json

    for f in report["files"]:
        q = f["quarantine"] or {}
        yield {**{k: f.get(k) for k in CSV_FIELDS}, "quarantine_state": q.get("state"),
               "quarantined_path": q.get("quarantined_path"),
               "evidence": json.dumps(f["evidence"], ensure_ascii=False)}
