"""Report: the AI-use disclosure a studio asks for, built from the ledger alone.

One model (``build``), three forms: a self-contained HTML page (no network: styles inline,
thumbnails as data: URIs, a Content-Security-Policy that forbids any fetch), CSV, and JSON valid
against ``schemas/report.schema.json``. The report of a delivery (the default: the latest one
checked) is written for the producer who signs it: a banner with the verdict and counts, then
what needs written approval (with the exact ``provgate approve`` command), approved AI uses,
disclosed uses, undisclosed AI, blocked files, integrity problems, and every file's evidence;
its JSON and CSV carry the same sections. The ledger-wide report describes each file's latest
decision. Older rows stay in the ledger's chain, whose verification the report states, with
every chain's head as the report was built. Image sequences and packages are units: one row
each on the page, their files listed under them; JSON and CSV name each file's unit.

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
import shlex
import socket
import string
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from provgate import __version__, imf, register, sequences, units, vocabulary
from provgate.assets import Asset
from provgate.data import PACKAGE_DIR
from provgate.ledger import Ledger, now_iso
from provgate.policy import Approval, Policy, Scope
from provgate.record import Brief
from provgate.vocabulary import ACTION_STRENGTH, AI_KINDS, HOLDS, KINDS

# the report's order: the strongest action first
ACTIONS = tuple(reversed(vocabulary.ACTIONS))
CSV_FIELDS = ("id", "time", "path", "unit", "kind", "c2pa", "zone", "action", "reason",
              "approval_state", "approval_ref", "quarantine_state", "quarantined_path",
              "fingerprint", "size", "error", "evidence")
# the delivery report's sections, in the order the producer reads them
SECTIONS = (("needs_approval", "Needs written approval"), ("approved", "Approved AI uses"),
            ("disclosed", "Disclosed uses"), ("undisclosed", "Undisclosed AI"),
            ("blocked", "Blocked and quarantined"), ("integrity", "Integrity problems"))
EVIDENCE = ("evidence", "Every file and its evidence")
DELIVERY_CSV_FIELDS = ("section", "id", "path", "unit", "kind", "action", "zone", "reason",
                       "approval_state", "approval_ref", "approver", "category", "expires",
                       "scope", "command", "status", "entries", "detected",
                       "quarantine_state", "quarantined_path", "problem", "c2pa", "time",
                       "fingerprint", "size", "error", "evidence")
VERDICTS = ("passed", "FAILED")
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
          delivery: dict[str, Any] | None = None,
          options: dict[str, str | None] | None = None,
          note: str | None = None, *, policy: Policy) -> dict[str, Any]:
    """The report as data: what the ledger says now about each file in the filter, or, for
    a ``delivery`` record, about each file of that delivery as that check decided it (a
    later check of a subfolder or of another delivery changes nothing in it), with the
    producer's sections. ``options`` (``policy``, ``ledger``) are put in the approve
    commands it prints, so that they act on the same ledger; ``note`` says why this report.
    Image sequences and packages are ``units`` (each file names its own); ``policy`` (the
    caller's: the library never picks one) decides a sequence whose approval was given for
    other frames.
    ``ledger_heads`` is where every chain stood as the report was built."""
    heads = ledger.heads()
    count, broken, message = ledger.verify()
    approvals = {a.id: a for a in ledger.approvals()}
    # every row, verified or not: a broken ledger is reported as broken, with what it holds
    moves = {m["decision_id"]: m for m in ledger.moves(verified=False)}
    departures = {e["path"]: e for e in ledger.events(verified=True)}  # the latest wins
    now = datetime.now(timezone.utc)
    scope = _scope(delivery)
    rows, unrecorded = (_delivery_rows(ledger, delivery, zone) if delivery is not None else
                        (ledger.decisions(since=since, path=path, zone=zone, latest=True), []))
    files = []
    for row in rows:
        rec = record(row, approvals)
        rec["approval_state"] = approval_state(rec, approvals.values(), now, scope)
        move = moves.get(rec["id"])
        rec["quarantine"] = ({k: move[k] for k in ("id", "state", "quarantined_path",
                                                   "receipt_path", "updated", "error")}
                             if move else None)
        gone = departures.get(rec["path"])
        if gone and gone["time"] > rec["time"]:
            rec["departed"] = {k: gone[k] for k in ("event", "time", "dest")}
        files.append(rec)
    _add_thumbnails(files, thumbnails)
    found = _units(files, policy, approvals)
    doc: dict[str, Any] = {
        "report": {"title": "Generative AI disclosure", "generated": now_iso(),
                   "host": socket.gethostname(), "provgate": __version__,
                   "ledger": str(ledger.path),
                   "filters": {"since": since, "path": path, "zone": zone,
                               "delivery": delivery["name"] if delivery else None},
                   "delivery": _delivery_meta(delivery),
                   "chain": {"intact": broken is None, "decisions": count,
                             "message": message},
                   "ledger_heads": heads,
                   "note": note},
        "totals": _totals(files),
        "files": files,
        "units": found,
    }
    if delivery is not None:
        approve = _Approve(delivery, options or {})
        doc["sections"] = sections(files, unrecorded, approvals, now, scope, approve)
        doc["banner"] = banner(delivery, files, doc["sections"], heads.get("decisions"))
    return doc


def _delivery_meta(delivery: dict[str, Any] | None) -> dict[str, Any] | None:
    if delivery is None:
        return None
    return {k: delivery.get(k) for k in ("id", "name", "time", "verdict", "files", "held",
                                         "show", "episode", "user", "decisions_head")}


def _scope(delivery: dict[str, Any] | None) -> Scope:
    """Where a delivery was gated: an approval scoped elsewhere does not count for it."""
    if delivery is None:
        return Scope()
    return Scope(delivery.get("show"), delivery.get("episode"), delivery["name"])


def _delivery_rows(ledger: Ledger, delivery: dict[str, Any], zone: str | None
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The decision rows a delivery record names, and its files with no row to show (not
    recorded, or the row is gone from the ledger)."""
    rows, unrecorded = [], []
    for path, f in sorted(json.loads(delivery["decisions"]).items(),
                          key=lambda item: (item[1].get("id") or 0, item[0])):
        row = ledger.decision(f["id"]) if f.get("id") else None
        if row is None:
            unrecorded.append({"id": f.get("id"), "path": path, "kind": f.get("kind"),
                               "action": f.get("action"), "zone": None})
        elif not zone or row["zone"] == zone:
            rows.append(row)
    for u in json.loads(delivery.get("units") or "[]"):  # held as a whole, by the check
        unrecorded.append({"id": None, "path": u["path"], "kind": u["kind"],
                           "action": u["action"], "zone": None, "problem": u["problem"]})
    return rows, unrecorded


def approval_state(rec: dict[str, Any], approvals: Iterable[Approval], now: datetime,
                   scope: Scope | None = None) -> str:
    """Where the written approval stands today, not only when the file was decided."""
    if rec["approval_id"]:
        appr = next((a for a in approvals if a.id == rec["approval_id"]), None)
        if appr is None or appr.active(now):
            return "approved"
        return "approval revoked" if appr.revoked else "approval expired"
    if rec["action"] not in HOLDS:
        return "not needed"
    if _approved_since(rec, approvals, now, scope or Scope()):
        return "approved since the decision (the next scan records it)"
    return "awaiting written approval" if rec["action"] == "escalate" else "not approved"


def _approved_since(rec: dict[str, Any], approvals: Iterable[Approval], now: datetime,
                    scope: Scope) -> Approval | None:
    asset = Asset(rec["path"], rec.get("root") or "", fingerprint=rec["fingerprint"])
    return next((a for a in approvals if a.clears(asset, scope, now)), None)


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


# -- sequences and packages ------------------------------------------------------------------

def _units(files: list[dict[str, Any]], policy: Policy, approvals: dict[int, Approval]
           ) -> list[dict[str, Any]]:
    """The units a facility delivers among the files, from the ledger alone: image sequences
    (``units.fold`` over the frames' decisions: frame range, held frames, evidence ranges;
    ``schemas/unit.schema.json``) and packages (a folder whose files include an ASSETMAP,
    with every file below it). Each file gets ``unit``: its sequence's pattern or its
    package's folder, or None. A file whose kind or action is not one provgate writes (a
    hand-edited ledger) stays a file."""
    for f in files:
        f["unit"] = None
    folders = sorted({os.path.dirname(f["path"]) for f in files
                      if os.path.basename(f["path"]).lower() in imf.ASSETMAP_NAMES},
                     key=len, reverse=True)  # the deepest first: a package in a package
    packed: dict[str, list[dict[str, Any]]] = {}
    loose: dict[str, dict[str, Any]] = {}
    for f in files:
        if f["kind"] not in KINDS or f["action"] not in ACTIONS:
            continue
        folder = next((d for d in folders if f["path"].startswith(d.rstrip("/") + "/")), None)
        if folder is not None:
            packed.setdefault(folder, []).append(f)
        else:
            loose.setdefault(f["path"], f)  # a path twice (moved onto another) is not a frame
    sequence_approvals = {a.id: {"ref": a.ref, "sequence": a.sequence}
                          for a in approvals.values() if a.sequence}
    found = []
    for item in units.fold([_brief(f) for f in loose.values()], policy, sequence_approvals):
        if isinstance(item, units.Unit):
            for b in item.frames:
                loose[b.path]["unit"] = item.path
            found.append(item.to_json())
    for folder, members in packed.items():
        for f in members:
            f["unit"] = folder
        found.append(_package(folder, members))
    return sorted(found, key=lambda u: u["path"])


def _brief(f: dict[str, Any]) -> Brief:
    """A file of the report as the unit it belongs to reads it."""
    tags = tuple(dict.fromkeys(str(s["tag"]) for s in _evidence(f["evidence"]) if s.get("tag")))
    return Brief(f["path"], f["kind"], f["action"], str(f["reason"] or ""), f["approval"],
                 f["fingerprint"], f["error"], id=f["id"], zone=str(f["zone"] or ""), tags=tags)


def _package(folder: str, members: list[dict[str, Any]]) -> dict[str, Any]:
    """A package's row (``schemas/unit.schema.json``) from its files' decisions: the
    strongest kind and action of its files, and each held file in the evidence."""
    strongest = max(members, key=lambda f: ACTION_STRENGTH[f["action"]])
    kind = max((f["kind"] for f in members), key=sequences.SEQUENCE_RANK.__getitem__)
    held = [f for f in members if f["action"] in HOLDS]
    return {"unit": "package", "path": folder, "kind": kind, "action": strongest["action"],
            "zone": strongest["zone"], "fingerprint": None, "files": len(members),
            "reason": f"{len(members)} files; {strongest['action']}: "
                      f"{os.path.basename(strongest['path'])}: {strongest['reason']}",
            "evidence": [f"{os.path.basename(f['path'])}: {f['kind']}, {f['action']}"
                         for f in held],
            "held_files": [os.path.basename(f["path"]) for f in held],
            "approval": None,
            "problems": [f"{os.path.basename(f['path'])}: {problem}" for f in members
                         if (problem := _integrity(f))]}


# -- the delivery's sections -----------------------------------------------------------------

class _Approve:
    """The ``provgate approve`` command that clears one file of a delivery, as the command
    accepts it: the register entry that declares the file (``--entry``, read from the
    register the delivery's check recorded), else the file where it is now (its quarantined
    copy, where it moved) bound to the content that was decided (``--fingerprint``)."""

    def __init__(self, delivery: dict[str, Any], options: dict[str, str | None]) -> None:
        self.delivery = delivery
        self.tail = "".join(f" --{k} {shlex.quote(v)}" for k, v in options.items() if v)

    def command(self, f: dict[str, Any], entry: dict[str, Any] | None) -> str | None:
        if not f["fingerprint"]:
            return None  # nothing an approval can bind to: fix the file, check again
        q = shlex.quote
        if entry and self.delivery.get("register"):
            ref = "" if entry.get("approval_ref") else " --ref STUDIO-REF"
            return (f"provgate approve --entry {q(str(entry['id']))} --delivery "
                    f"{q(self.delivery['name'])}{ref} --by NAME{self.tail}")
        return (f"provgate approve {q(_where_now(f))} --fingerprint {q(f['fingerprint'])} "
                f"--ref STUDIO-REF --by NAME{self.tail}")


def sections(files: list[dict[str, Any]], unrecorded: list[dict[str, Any]],
             approvals: dict[int, Approval], now: datetime, scope: Scope,
             approve: _Approve) -> list[dict[str, Any]]:
    """The producer's sections, in ``SECTIONS`` order, each a list of items (a file may be
    in several: a disclosed use that still needs approval)."""
    found: dict[str, list[dict[str, Any]]] = {key: [] for key, _ in SECTIONS}
    for f in files:
        for key, item in _placements(f, approvals, now, scope, approve):
            found[key].append(item)
    for u in unrecorded:
        found["integrity"].append({**u, "problem": u.get("problem") or (
            f"decision #{u['id']} of this delivery is missing from the ledger" if u["id"]
            else "no decision was recorded for it: it was not judged")})
    return [{"id": key, "title": title, "items": found[key]} for key, title in SECTIONS]


def _placements(f: dict[str, Any], approvals: dict[int, Approval], now: datetime,
                scope: Scope, approve: _Approve) -> Iterable[tuple[str, dict[str, Any]]]:
    base = {k: f.get(k) for k in ("id", "path", "unit", "kind", "action", "zone")}
    status, entries = register.recorded_status(f["kind"], _evidence(f["evidence"]))
    entry = next(iter(entries), None)
    state = f["approval_state"]
    if f["fingerprint"] and (state in ("approval revoked", "approval expired") or (
            f["action"] in HOLDS and not state.startswith("approved"))):
        yield "needs_approval", {**base, "reason": f["reason"], "approval_state": state,
                                 "entry": entry.get("id") if entry else None,
                                 "command": approve.command(f, entry)}
    appr = _approval_of(f, approvals, now, scope)
    if appr is not None:
        yield "approved", {**base, "approval_id": appr.id, "ref": appr.ref,
                           "approver": appr.approver, "category": appr.category,
                           "expires": appr.expires, "scope": appr.scope_line,
                           "approval_state": state}
    if status in ("disclosed", "declared_only"):
        yield "disclosed", {**base, "status": status, "entries": entries}
    elif status == "undisclosed":
        yield "undisclosed", {**base, "detected": _detected(f), "reason": f["reason"]}
    if f["action"] == "block":
        q = f["quarantine"] or {}
        yield "blocked", {**base, "quarantine_state": _quarantine_state(f),
                          "quarantined_path": q.get("quarantined_path"),
                          "reason": f["reason"]}
    problem = _integrity(f)
    if problem:
        yield "integrity", {**base, "problem": problem}


def _approval_of(f: dict[str, Any], approvals: dict[int, Approval], now: datetime,
                 scope: Scope) -> Approval | None:
    """The approval that clears the file today: the one its decision names, or one given
    since; None when there is none, or it was revoked or has expired."""
    if f["approval_state"] == "approved":
        found = approvals.get(f["approval_id"])
        # an approval row that no longer verifies: what the decision row says of it
        return found or Approval(f["approval_id"], f["approval_ref"] or "", "", "")
    if f["approval_state"].startswith("approved since"):
        return _approved_since(f, approvals.values(), now, scope)
    return None


def _detected(f: dict[str, Any]) -> str:
    """What the file itself says of AI: its first AI signal that is not a declaration."""
    sig = next((s for s in _evidence(f["evidence"]) if s.get("kind") in AI_KINDS
                and s.get("source") != "register"), {})
    return str(sig.get("meaning") or f["kind"])


def _quarantine_state(f: dict[str, Any]) -> str:
    q = f["quarantine"] or {}
    return q.get("state") or "not moved" + (f" ({f['mode']} mode)"
                                            if f.get("mode") != "enforce" else "")


def _integrity(f: dict[str, Any]) -> str | None:
    """Why a file could not be judged, or its content cannot be trusted as decided."""
    q = f["quarantine"] or {}
    if f["kind"] == "unreadable" or f["error"]:
        return f"could not be judged: {f['error'] or 'unreadable'}"
    if f["c2pa"] == "invalid":
        return ("its Content Credentials do not verify: the file changed after it was signed, "
                "or the signature is damaged")
    if q.get("state") == "failed":
        return f"the quarantine move failed: {q.get('error') or 'unknown error'}"
    return None


def banner(delivery: dict[str, Any], files: list[dict[str, Any]],
           secs: list[dict[str, Any]], head: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the producer reads first: the delivery, its verdict and the counts, and where
    the decisions chain stood: ``ledger_head`` as the report was built (``head``, its count
    and hash), ``decisions_head`` as the delivery's check recorded it."""
    actions = Counter(f["action"] for f in files)
    return {"delivery": delivery["name"], "id": delivery["id"], "time": delivery["time"],
            "show": delivery.get("show"), "episode": delivery.get("episode"),
            "verdict": delivery["verdict"], "held": delivery["held"],
            "register": bool(delivery.get("register_digest")),
            "ledger_head": head, "decisions_head": delivery.get("decisions_head"),
            "counts": {"files": delivery["files"], **{a: actions[a] for a in ACTIONS},
                       **{s["id"]: len(s["items"]) for s in secs}}}


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
    """Where the decided content is now: its quarantined copy, where the daemon saw it move."""
    q, gone = f["quarantine"] or {}, f.get("departed") or {}
    if q.get("state") == "done":
        return q["quarantined_path"]
    return gone.get("dest") or f["path"]


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
    """One self-contained page; every value from the ledger is escaped. A delivery's report
    has its own body (banner, sections, evidence) under the same head (CSP, stylesheet)."""
    text = _template_text()
    if "sections" in report:
        return _hashed(_delivery_page(text, report))
    meta, totals, files = report["report"], report["totals"], report["files"]
    page = string.Template(text).substitute(
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
        files=_evidence_html(files, report["units"]) or "<p>No decisions match.</p>")
    return _hashed(page)


def _template_text() -> str:
    """report.html with the delivery report's styles and the print stylesheet added to its
    one <style> element (the CSP allows that element by its hash, and nothing else)."""
    text = (PACKAGE_DIR / "report.html").read_text(encoding="utf-8")
    return text.replace("</style>", _EXTRA_CSS + "</style>", 1)


def _hashed(page: str) -> str:
    # the CSP (in <head>, before any ledger value) names the hash of the page's own <style>
    return page.replace(_STYLE_HASH, _style_hash(page), 1)


# Screen: the banner and the command cells. Print (A4 or Letter, whatever the printer has):
# black on white, no background needed (colours are only borders and text), a row, a file's
# evidence and the banner never split across pages, headings kept with what follows, table
# headers repeated, long paths and commands wrapped inside the page.
_EXTRA_CSS = """#banner { border: 3px solid #555; padding: .6em 1em; margin: 0 0 1.5em; }
#banner h1 { margin: 0 0 .2em; } #banner p { margin: .3em 0; }
#banner .kicker { text-transform: uppercase; letter-spacing: .08em; color: #555; }
#banner.verdict-failed { border-color: #a00; } #banner.verdict-passed { border-color: #176317; }
.verdict strong { font-size: 1.3em; }
.verdict-failed .verdict strong { color: #a00; } .verdict-passed .verdict strong { color: #176317; }
#counts td { text-align: center; font-weight: bold; font-size: 1.15em; }
code.command { font: .9em ui-monospace, monospace; white-space: pre-wrap; word-break: break-all; }
tr.command td { border-top: none; padding-left: 1.5em; }
h2 .count { color: #555; font-weight: normal; }
tr.unit td { font-weight: 600; } tr.members td { border-top: none; padding-left: 1.5em; }
span.fact { white-space: nowrap; } ul.ranges { margin: .2em 0 0; padding-left: 1.2em;
  font-weight: normal; }
details.members > summary { color: #555; cursor: pointer; }
details.unit details.file { margin-left: 1em; }
#banner p.heads code { font: .85em ui-monospace, monospace; word-break: break-all; }
@media print {
  @page { size: auto; margin: 14mm 12mm; }
  body { margin: 0; padding: 0; max-width: none; font-size: 9.5pt; color: #000; }
  th { background: none; } h2 { margin-top: 1.2em; }
  h1, h2 { break-after: avoid; page-break-after: avoid; }
  #banner, tr, tbody.item, details.file, img.thumb { break-inside: avoid;
    page-break-inside: avoid; }
  thead { display: table-header-group; }
  td, th, code.command { overflow-wrap: anywhere; }
  summary { list-style: none; } summary::-webkit-details-marker { display: none; }
}
"""


def _delivery_page(template_text: str, report: dict[str, Any]) -> str:
    meta, b = report["report"], report["banner"]
    head = template_text[:template_text.index("<body>")]
    head = string.Template(head).substitute(
        style_hash=_STYLE_HASH, title=_e(f"{meta['title']}: {b['delivery']}"))
    found = {u["path"]: u for u in report["units"]}
    body = [_banner_html(b, meta), *(_section_html(s, b, found) for s in report["sections"]),
            f'<h2 id="{EVIDENCE[0]}">{EVIDENCE[1]}</h2>',
            _evidence_html(report["files"], report["units"], opened=True)
            or '<p class="empty">No file of this delivery is in the ledger.</p>',
            '<h2 id="about">About this report</h2>', _totals_html(report["totals"]),
            f'<table id="meta">{_meta(meta)}</table>']
    return f"{head}<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"


def _banner_html(b: dict[str, Any], meta: dict[str, Any]) -> str:
    verdict = _css(b["verdict"], VERDICTS).lower()
    made = " · ".join(f"{k} {_e(b[k.lower()])}" for k in ("Show", "Episode") if b[k.lower()])
    counts = b["counts"]
    cells = [("files", counts["files"]), *((a, counts[a]) for a in ACTIONS),
             *((title, counts[key]) for key, title in SECTIONS)]
    chain = meta["chain"]
    return (f'<header id="banner" class="verdict-{verdict}">'
            f'<p class="kicker">{_e(meta["title"])}</p><h1>{_e(b["delivery"])}</h1>'
            + (f'<p class="production">{made}</p>' if made else "")
            + f'<p class="verdict">Verdict: <strong>{_e(b["verdict"])}</strong>, '
            f'{_e(b["held"])} of {_e(counts["files"])} files held until approved or removed.</p>'
            '<table id="counts"><thead><tr>'
            + "".join(f"<th>{_e(k)}</th>" for k, _ in cells) + "</tr></thead><tr>"
            + "".join(f"<td>{_e(v)}</td>" for _, v in cells) + "</tr></table>"
            f'<p class="checked">Delivery #{_e(b["id"])}, checked {_e(str(b["time"])[:19])} '
            f'UTC; GenAI register: {"delivered" if b["register"] else "none delivered"}; '
            f'ledger chain: {"intact" if chain["intact"] else "BROKEN"}.</p>'
            f'<p class="heads" id="heads">Ledger head as this report was made: '
            f'{_head_text(b["ledger_head"])}; as the delivery was checked: decisions '
            f'<code>{_e(b["decisions_head"] or "not recorded")}</code>.</p></header>')


def _head_text(head: dict[str, Any] | None) -> str:
    """A chain head as HTML: ``decisions #N <code>hash</code>``."""
    if not head:
        return "none that verifies (no seal key?)"
    return f'decisions #{_e(head.get("count"))} <code>{_e(head.get("head"))}</code>'


def _entry_text(e: dict[str, Any]) -> str:
    """A declared use in a sentence: id, tool, purpose, category, stage, references."""
    tool = " ".join(str(e[k]) for k in ("tool", "version") if e.get(k))
    refs = "".join(f", {label} {e[k]}" for k, label in (("consent_ref", "consent"),
                                                        ("approval_ref", "approval"))
                   if e.get(k))
    what = ", ".join(str(e[k]).replace("_", " ") for k in ("category", "stage") if e.get(k))
    return f"{e.get('id')}: {tool or '?'}, {e.get('purpose') or '?'} ({what}{refs})"


_Column = tuple[str, Callable[[dict[str, Any]], Any]]
_COLUMNS: dict[str, tuple[_Column, ...]] = {
    "needs_approval": (("file", lambda i: i["path"]), ("kind", lambda i: i["kind"]),
                       ("why", lambda i: i["reason"])),
    "approved": (("file", lambda i: i["path"]), ("reference", lambda i: i["ref"]),
                 ("approver", lambda i: i["approver"]),
                 ("category", lambda i: (i["category"] or "").replace("_", " ")),
                 ("expires", lambda i: _when(i["expires"])),
                 ("scope", lambda i: i["scope"])),
    "disclosed": (("file", lambda i: i["path"]), ("kind", lambda i: i["kind"]),
                  ("status", lambda i: i["status"].replace("_", " ")),
                  ("declared use", lambda i: "; ".join(map(_entry_text, i["entries"])))),
    "undisclosed": (("file", lambda i: i["path"]), ("kind", lambda i: i["kind"]),
                    ("what the file says", lambda i: i["detected"]),
                    ("action", lambda i: i["action"])),
    "blocked": (("file", lambda i: i["path"]), ("kind", lambda i: i["kind"]),
                ("quarantine", lambda i: i["quarantine_state"]),
                ("quarantined as", lambda i: i["quarantined_path"])),
    "integrity": (("file", lambda i: i["path"]), ("kind", lambda i: i["kind"]),
                  ("problem", lambda i: i["problem"])),
}
_EMPTY = {"needs_approval": "Nothing needs written approval.",
          "approved": "No AI use is approved in writing.",
          "disclosed": "No use of this delivery is declared in a GenAI register.",
          "undisclosed": "No AI was found that the register does not declare.",
          "blocked": "No file is blocked.",
          "integrity": "Every file was read and judged."}


def _section_html(section: dict[str, Any], b: dict[str, Any],
                  found: dict[str, dict[str, Any]]) -> str:
    key, items = section["id"], section["items"]
    head = (f'<h2 id="{_css(key, tuple(_COLUMNS))}">{_e(section["title"])} '
            f'<span class="count">({len(items)})</span></h2>')
    if not items:
        empty = _EMPTY.get(key, "None.")
        if key in ("disclosed", "undisclosed") and not b["register"]:
            empty += " No GenAI register was delivered: nothing is declared."
        return f'{head}<p class="empty">{_e(empty)}</p>'
    cols = _COLUMNS.get(key, (("file", lambda i: i.get("path")),))
    heads = f"<thead><tr>{''.join(f'<th>{_e(name)}</th>' for name, _ in cols)}</tr></thead>"
    rows = "".join(_item_html(group[0], cols) if unit is None else
                   _unit_item_html(unit, group, cols, heads)
                   for unit, group in _grouped(items, found))
    return f"{head}<table>{heads}{rows}</table>"


def _grouped(items: list[dict[str, Any]], found: dict[str, dict[str, Any]]
             ) -> list[tuple[dict[str, Any] | None, list[dict[str, Any]]]]:
    """Items in order, those of one unit together at the place of its first: (unit, its
    items), or (None, [item]) for a file of no unit."""
    out: list[tuple[dict[str, Any] | None, list[dict[str, Any]]]] = []
    at: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        unit = found.get(item.get("unit") or "")
        if unit is None:
            out.append((None, [item]))
        elif unit["path"] in at:
            at[unit["path"]].append(item)
        else:
            at[unit["path"]] = [item]
            out.append((unit, at[unit["path"]]))
    return out


def _unit_item_html(unit: dict[str, Any], items: list[dict[str, Any]],
                    cols: tuple[_Column, ...], heads: str) -> str:
    """A sequence or package as one row (its pattern or folder and what it is), then its
    files of this section listed under it, collapsed, each with its own cells and command."""
    member = "frame" if unit["unit"] == "sequence" else "file"
    listed = "".join(_item_html(i, cols) for i in items)
    whole = _sequence_command(unit, items)
    whole_row = (f'<tr class="command"><td colspan="{len(cols)}">To approve the whole '
                 f'sequence (bound to its frames as they are), run: <code class="command">'
                 f'{_e(whole)}</code></td></tr>' if whole else "")
    return (f'<tbody class="item unit"><tr class="unit"><td class="path">{_e(unit["path"])}'
            f'</td><td class="value" colspan="{len(cols) - 1}">{_unit_facts(unit)}</td></tr>'
            f'{whole_row}'
            f'<tr class="members"><td colspan="{len(cols)}"><details class="members">'
            f"<summary>{len(items)} {member}{'s' if len(items) != 1 else ''} here: "
            f"{_e(_which(unit, items))}</summary><table>{heads}{listed}</table></details>"
            "</td></tr></tbody>")


def _sequence_command(unit: dict[str, Any], items: list[dict[str, Any]]) -> str | None:
    """``provgate approve 'dir/name.####.exr' ...`` for a held sequence whose frames need
    approval, with the options its frames' commands carry (policy, ledger)."""
    commands = [i.get("command") for i in items if i.get("command")]
    if unit["unit"] != "sequence" or not commands or "--entry" in commands[0]:
        return None
    tail = commands[0].partition(" --by NAME")[2]
    pin = f" --fingerprint {unit['digest']}" if unit.get("digest") else ""
    return (f"provgate approve {shlex.quote(unit['path'])}{pin} --ref STUDIO-REF --by NAME"
            f"{tail}")


def _unit_facts(unit: dict[str, Any]) -> str:
    """What a unit is, in labelled parts: its frames (or files), the held ones, its kind,
    its action and its evidence as frame ranges."""
    if unit["unit"] == "sequence":
        fr = unit["frames"]
        span = (f"frames {fr['first']}-{fr['last']} ({fr['count']} frames"
                + (f"; {fr['missing']} missing: {fr['gaps']}" if fr["missing"] else "") + ")")
        held = f"held frames: {unit['held_frames'] or 'none'}"
    else:
        span = f"package, {unit['files']} files"
        held = f"held files: {', '.join(unit['held_files']) or 'none'}"
    parts = [span, held, f"kind {unit['kind']}", f"action {unit['action']}",
             *(f"problem: {p}" for p in unit["problems"])]
    evidence = "".join(f"<li>{_e(line)}</li>" for line in unit["evidence"])
    return ("; ".join(f'<span class="fact">{_e(p)}</span>' for p in parts)
            + (f'<ul class="ranges">{evidence}</ul>' if evidence else ""))


def _which(unit: dict[str, Any], items: list[dict[str, Any]]) -> str:
    """The frames (as ranges) or file names of a unit's items."""
    names = [os.path.basename(i["path"]) for i in items]
    if unit["unit"] == "sequence":  # name.####.exr: the number sits where the #s are
        pattern = unit["pattern"]
        suffix = pattern[pattern.rfind("."):]
        prefix = pattern[:len(pattern) - len(suffix)].rstrip("#")
        digits = [n[len(prefix):len(n) - len(suffix)] for n in names]
        if all(d.isascii() and d.isdigit() for d in digits):
            return sequences.format_ranges(sequences.ranges(map(int, digits)), limit=10)
    return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def _item_html(item: dict[str, Any], cols: tuple[_Column, ...]) -> str:
    """One item as a row group (kept on one page): its cells, then the approve command
    across the table when the item has one."""
    cells = "".join(f'<td class="{"path" if name == "file" else "value"}">{_e(get(item))}</td>'
                    for name, get in cols)
    line = ""
    if "command" in item:
        shown = (f'To approve, run: <code class="command">{_e(item["command"])}</code>'
                 if item["command"] else "Fix the file and check again: nothing was read that "
                 "an approval could bind to.")
        line = f'<tr class="command"><td colspan="{len(cols)}">{shown}</td></tr>'
    return f'<tbody class="item"><tr>{cells}</tr>{line}</tbody>'


def _when(expires: str | None) -> str:
    """An expiry as a producer reads it: a date given as a day covers that day."""
    if not expires:
        return "never"
    day, _, time = expires.partition("T")
    if time.startswith("23:59:59.999999"):
        return f"{day} (end of day, UTC)"
    return f"{day} {time[:8]} UTC" if time else day


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
    if meta.get("note"):
        rows.insert(0, ("Note", meta["note"]))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return (f'{body}<tr><th>Ledger chain</th><td class="chain-{state.lower()}" id="chain">'
            f"{state}: {_e(chain['message'])}</td></tr>"
            f"<tr><th>Ledger head</th><td id=\"ledger-head\">"
            f"{_head_text((meta.get('ledger_heads') or {}).get('decisions'))}</td></tr>")


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
    value = {"quarantine_state": _quarantine_state(f),
             "quarantined_path": q.get("quarantined_path")}.get(col, f.get(col))
    return f'<td class="{col}">{_e(value)}</td>'


def _table(rows: list[dict[str, Any]], cols: tuple[str, ...], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in cols)
    body = "".join("<tr>" + "".join(_cell(f, c) for c in cols) + "</tr>" for f in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _file_html(f: dict[str, Any], opened: bool = False) -> str:
    # ``opened``: a delivery's evidence is printed, and a closed <details> prints nothing
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
    return (f'<details class="file {_css(f["action"], ACTIONS)}" data-id="{_e(f["id"])}"'
            f'{" open" if opened else ""}>'
            f'<summary><span class="action">{_e(f["action"])}</span> '
            f'<span class="kind {_css(f["kind"], KINDS)}">{_e(f["kind"])}</span> '
            f'<span class="path">{_e(f["path"])}</span></summary>{thumb}'
            f"<p>{_e(f['reason'])}</p>{error}<p>C2PA: {_e(f['c2pa'])}; zone {_e(f['zone'])}; "
            f"{_e(f['fingerprint'])}; decision #{_e(f['id'])} at {_e(f['time'])}</p>"
            f"{evidence}</details>")


def _evidence_html(files: list[dict[str, Any]], found: list[dict[str, Any]],
                   opened: bool = False) -> str:
    """Every file's evidence; a sequence or a package as one block at its first file's place
    (what it is, its evidence as ranges), its files' evidence listed inside it, collapsed."""
    by_path = {u["path"]: u for u in found}
    members: dict[str, list[dict[str, Any]]] = {}
    for f in files:
        if f.get("unit") in by_path:
            members.setdefault(f["unit"], []).append(f)
    out = []
    for f in files:
        unit = by_path.get(f.get("unit") or "")
        if unit is None:
            out.append(_file_html(f, opened))
        elif members[unit["path"]][0] is f:
            out.append(_unit_html(unit, members[unit["path"]], opened))
    return "\n".join(out)


def _unit_html(unit: dict[str, Any], files: list[dict[str, Any]], opened: bool) -> str:
    member = "frames" if unit["unit"] == "sequence" else "files"
    return (f'<details class="file unit {_css(unit["action"], ACTIONS)}" '
            f'data-unit="{_e(unit["path"])}"{" open" if opened else ""}>'
            f'<summary><span class="action">{_e(unit["action"])}</span> '
            f'<span class="kind {_css(unit["kind"], KINDS)}">{_e(unit["kind"])}</span> '
            f'<span class="path">{_e(unit["path"])}</span></summary>'
            f'<p>{_e(unit["reason"])}</p><p class="facts">{_unit_facts(unit)}</p>'
            f'<details class="members"><summary>its {len(files)} {member}, one by one</summary>'
            + "\n".join(_file_html(f) for f in files) + "</details></details>")


def csv_fields(report: dict[str, Any]) -> tuple[str, ...]:
    """The CSV columns of this report: a delivery's has a ``section`` column."""
    return DELIVERY_CSV_FIELDS if "sections" in report else CSV_FIELDS


def csv_rows(report: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """One flat row per file for spreadsheets; for a delivery, one row per item of each
    section (``section`` names it), then one per file (section ``evidence``)."""
    if "sections" in report:
        yield from _section_rows(report)
        return
    for f in report["files"]:
        q = f["quarantine"] or {}
        yield {**{k: f.get(k) for k in CSV_FIELDS}, "quarantine_state": q.get("state"),
               "quarantined_path": q.get("quarantined_path"),
               "evidence": json.dumps(f["evidence"], ensure_ascii=False)}


def _section_rows(report: dict[str, Any]) -> Iterable[dict[str, Any]]:
    by_id = {f["id"]: f for f in report["files"]}
    for section in report["sections"]:
        for item in section["items"]:
            yield _csv_row(section["id"], by_id.get(item.get("id")) or {}, item)
    for f in report["files"]:
        yield _csv_row(EVIDENCE[0], f, {})


def _csv_row(section: str, f: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    q = f.get("quarantine") or {}
    row = {**{k: f.get(k) for k in DELIVERY_CSV_FIELDS}, "quarantine_state": q.get("state"),
           "quarantined_path": q.get("quarantined_path"), **item, "section": section}
    row["approval_ref"] = item.get("ref") or f.get("approval_ref")
    row["entries"] = "; ".join(str(e.get("id")) for e in item.get("entries") or [])
    row["evidence"] = json.dumps(f.get("evidence"), ensure_ascii=False) if f else None
    return row
