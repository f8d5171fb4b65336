"""The disclosure report runs nothing from the ledger (issue 12): rows forged into a real ledger,
the way someone with write access to the file would (sqlite3, hostile text in every column, the
chain recomputed with the public algorithm), rendered by `provgate report` and opened in headless
Chromium. Every payload would set document.title or add an element if it ran."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import need_tool, run
from provgate.ledger import CHAINED, EVENT_CHAINED, GENESIS, row_hash

TITLE = "Generative AI disclosure"
SAFE_CLASS = re.compile(r"^[a-z0-9_-]+$")


def payload(col: str) -> str:
    """Breaks out of a text node, a double- or single-quoted attribute and a class list; runs
    without a click (onerror, onload, ontoggle, autofocus+onfocus, a script element)."""
    # the id is put together when the script runs: the markup never holds it
    run_it = (f"document.title='PWNED {col}';"
              "document.body.appendChild(document.createElement('ins')).id='js'+'ran'")
    return (f'x" autofocus onfocus="{run_it}" tabindex="1" a="\'><img src=x onerror="{run_it}">'
            f"<script>{run_it}</script><svg onload=\"{run_it}\"></svg>"
            f'<details open ontoggle="{run_it}"></details><!-- {col}')


def as_text(value: str) -> str:
    """How Chromium serialises a text node holding ``value``."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


def _forge(db: sqlite3.Connection, table: str, fields: tuple[str, ...],
           rows: list[dict]) -> list[int]:
    """Append rows with hostile text in every column the caller does not set, chained."""
    last = db.execute(f"SELECT id, hash FROM {table} ORDER BY id DESC LIMIT 1").fetchone()
    ident, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    cols, ids = _columns(db, table), []
    for n, given in enumerate(rows, 1):
        row = {c: payload(f"{table}{n}.{c}") for c in cols}
        row.update(given, id=ident, prev_hash=prev)
        row["hash"] = prev = row_hash(row, fields)
        db.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                   f"({', '.join('?' * len(cols))})", [row[c] for c in cols])
        ids.append(ident)
        ident += 1
    return ids


@pytest.fixture
def hostile_ledger(delivery: Path, ledger_path: Path) -> Path:
    """A real ledger (a delivery scanned in enforce mode) with forged rows appended."""
    assert run("scan", delivery, "--mode", "enforce").exit_code == 0
    db = sqlite3.connect(ledger_path)

    def evidence(n: int) -> str:
        sig = {k: payload(f"decisions{n}.evidence.{k}")
               for k in ("kind", "source", "tag", "value", "meaning", "marker")}
        return json.dumps([sig, payload(f"decisions{n}.evidence.bare"), 7, None])

    now = "2030-01-01T00:00:00.000000+00:00"
    ids = _forge(db, "decisions", CHAINED, [
        # 1: every column hostile (the id and the chain aside)
        {"evidence": evidence(1), "tools": json.dumps({"exiftool": payload("tools")})},
        # 2: a known action, so its hostile kind and approval ref land in the escalations table
        {"action": "escalate", "approval_id": None, "time": now, "size": None,
         "evidence": evidence(2), "tools": "{}"},
        # 3: blocked, with a hostile quarantine row and a hostile departure
        {"action": "block", "approval_id": None, "time": now, "size": None,
         "evidence": evidence(3), "tools": "{}"},
    ])
    path3 = db.execute("SELECT path FROM decisions WHERE id = ?", [ids[2]]).fetchone()[0]
    qcols = _columns(db, "quarantine")
    q = {c: payload(f"quarantine.{c}") for c in qcols}
    q.update(id=None, decision_id=ids[2], size=None)
    db.execute(f"INSERT INTO quarantine ({', '.join(qcols)}) VALUES "
               f"({', '.join('?' * len(qcols))})", [q[c] for c in qcols])
    _forge(db, "events", EVENT_CHAINED, [
        {"path": path3, "time": "9999-12-31T00:00:00" + payload("events1.time"),
         "decision_id": ids[2]}])
    db.commit()
    db.close()
    return ledger_path


def _render(chromium: str, page: Path) -> tuple[str, str]:
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                           "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120, check=True)
    return proc.stdout, proc.stderr


def _ran(dom: str) -> list[str]:
    """Signs in the live DOM that a payload ran."""
    signs = []
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    if not title or "PWNED" in title.group(1):
        signs.append(f"title: {title.group(1) if title else None!r}")
    if 'id="jsran"' in dom:
        signs.append("an element was written")
    return signs


def _csp(source: str) -> dict[str, list[str]]:
    meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)"', source)
    assert meta, "the page has no Content-Security-Policy"
    return {d.split()[0]: d.split()[1:] for d in meta.group(1).split(";") if d.strip()}


def test_hostile_ledger_rows_are_shown_as_text_and_run_nothing(
        hostile_ledger: Path, tmp_path: Path) -> None:
    chromium = need_tool("chromium")
    page = tmp_path / "disclosure.html"
    result = run("report", "-o", page)
    assert result.exit_code in (0, 1), result.stderr  # 1: a (future) seal refuses the forgery
    source = page.read_text(encoding="utf-8")

    csp = _csp(source)
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'none'"]
    for directive in ("script-src", "script-src-elem", "script-src-attr", "default-src"):
        assert not {"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'"} & set(
            csp.get(directive, [])), directive
    assert "unsafe-inline" not in " ".join(" ".join(v) for v in csp.values())
    style = source.split("<style>", 1)[1].split("</style>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert csp["style-src"] == [f"'sha256-{digest}'"]  # the page's own stylesheet still applies

    dom, log = _render(chromium, page)
    assert not _ran(dom), _ran(dom)
    assert not re.search(r"<(script|svg|iframe|object|embed|ins)\b", dom, re.I)
    assert not re.search(r"<[a-z][^>]*\son[a-z]+\s*=", dom, re.I), "an inline handler in the DOM"
    assert "autofocus" not in re.sub(r">[^<]*<", "><", dom)  # only ever inside text
    classes = [c for v in re.findall(r'class="([^"]*)"', dom) for c in v.split()]
    assert classes and all(SAFE_CLASS.match(c) for c in classes), classes
    assert 'class="file other"' in dom and 'class="kind other"' in dom  # unknown: neutral
    # nothing even tried: no handler or script refused, and the style hash matches the page
    assert "Content Security Policy" not in log, log

    # the hostile text is on the page, as text, wherever the report shows those columns
    for shown in ("decisions1.kind", "decisions1.action", "decisions1.path",
                  "decisions1.reason", "decisions1.error", "decisions1.zone", "decisions1.c2pa",
                  "decisions1.fingerprint", "decisions1.time", "decisions1.id",
                  "decisions1.evidence.kind", "decisions1.evidence.source",
                  "decisions1.evidence.tag", "decisions1.evidence.value",
                  "decisions1.evidence.meaning", "decisions1.evidence.bare",
                  "decisions2.kind", "decisions2.approval_ref", "decisions2.reason",
                  "decisions3.kind", "decisions3.path", "quarantine.state",
                  "quarantine.quarantined_path"):
        if shown == "decisions1.id":
            continue  # the id is SQLite's integer key: nothing hostile can be stored there
        assert as_text(payload(shown)) in dom, shown
    # a departure whose row does not verify (forged without the key) is not taken at all
    assert as_text(payload("events1.event")) not in dom
    escalations = dom.split('id="escalations"')[1].split('id="blocked"')[0]
    assert as_text(payload("decisions2.approval_ref")) in escalations
    blocked = dom.split('id="blocked"')[1].split('id="flagged"')[0]
    assert as_text(payload("quarantine.quarantined_path")) in blocked
    # the real rows are still reported around the forged ones
    assert "ai_iptc_generated.jpg" in dom and dom.count('class="thumb"') >= 1


def test_the_payloads_do_run_where_nothing_stops_them(tmp_path: Path) -> None:
    """The detector can fail: the same payload, unescaped on a page with no CSP, runs."""
    chromium = need_tool("chromium")
    page = tmp_path / "open.html"
    page.write_text(f"<!DOCTYPE html><html><head><title>{TITLE}</title></head><body>"
                    f'<details class="file {payload("kind")}">{payload("path")}</details>'
                    "</body></html>", encoding="utf-8")
    dom, _ = _render(chromium, page)
    assert _ran(dom)


def test_the_csp_alone_stops_the_unescaped_payloads(hostile_ledger: Path,
                                                     tmp_path: Path) -> None:
    """Defence in depth: were a value ever left unescaped, the report's CSP would still run
    none of it (no inline script element, no inline handler)."""
    chromium = need_tool("chromium")
    report = tmp_path / "r.html"
    run("report", "-o", report)
    head = report.read_text(encoding="utf-8").split("</head>", 1)[0]
    page = tmp_path / "unescaped.html"
    page.write_text(f"{head}</head><body>"
                    f'<details class="file {payload("kind")}">{payload("path")}</details>'
                    "</body></html>", encoding="utf-8")
    dom, log = _render(chromium, page)
    assert not _ran(dom), _ran(dom)
    assert "Content Security Policy" in log  # Chromium says it refused them
