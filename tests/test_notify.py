"""The apprise notifier, delivering through apprise's own json:// service to a local server."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_json
from provgate.policy import DEFAULT_POLICY

import apprise  # noqa: E402,F401 - the test extra installs it; missing is an error


@pytest.fixture
def inbox() -> Iterator[tuple[int, list[dict]]]:
    got: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port, got
    server.shutdown()


def _policy(tmp_path: Path, extra: str) -> Path:
    pol = tmp_path / "p.toml"
    pol.write_text(DEFAULT_POLICY.read_text() + extra)
    return pol


def test_escalations_reach_apprise_with_file_reason_and_command(
        tmp_path: Path, delivery: Path, inbox: tuple[int, list[dict]]) -> None:
    port, got = inbox
    pol = _policy(tmp_path, f"""
[[notifiers]]
type = "apprise"
urls = ["json://127.0.0.1:{port}/provgate"]
title = "EP101 delivery"
min_action = "escalate"
""")
    recs = run_json("scan", delivery, "--policy", pol)
    held = [r for r in recs if r["action"] in ("escalate", "block")]
    assert len(got) == len(held) >= 2
    comp = next(m for m in got if "ai_genfill_composite.jpg" in m["title"])
    assert comp["title"] == "EP101 delivery: ESCALATE ai_genfill_composite.jpg"
    body = comp["message"]
    assert f"ESCALATE: {delivery}/ep101/final/ai_genfill_composite.jpg" in body
    assert "Why: In zone final, ai_composite" in body
    assert "Approve with: provgate approve '" in body and "--ref STUDIO-REF" in body
    assert "Ledger decision #" in body
    assert all(not r["warnings"] for r in held)


def test_apprise_failures_are_warnings_not_crashes(tmp_path: Path, delivery: Path) -> None:
    pol = _policy(tmp_path, """
[[notifiers]]
type = "apprise"
urls = ["json://127.0.0.1:9/refused"]
min_action = "escalate"

[[notifiers]]
type = "apprise"
urls = ["nosuchservice://x"]
min_action = "block"
""")
    recs = run_json("scan", delivery, "--policy", pol)
    blocked = next(r for r in recs if r["action"] == "block")
    assert any("could not deliver" in w for w in blocked["warnings"])
    assert any("does not understand the URL nosuchservice://" in w for w in blocked["warnings"])
