"""Policy decisions, the check gate's exit codes, and approvals, end to end through the CLI."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import by_name, run, run_json
from provgate.policy import DEFAULT_POLICY, Policy


def test_streamer_rule_in_final_and_temp(delivery: Path) -> None:
    records = run_json("scan", delivery)
    final = {Path(r["path"]).name: r for r in records if "/final/" in r["path"]}
    temp = {Path(r["path"]).name: r for r in records if "/temp/" in r["path"]}
    assert final["ai_iptc_generated.jpg"]["action"] == "block"
    assert final["ai_iptc_generated.jpg"]["rule"] == "zones.final.actions.ai_generated"
    assert final["ai_genfill_composite.jpg"]["action"] == "escalate"
    assert final["unknown_camera.jpg"]["action"] == "allow"
    assert final["human_capture.jpg"]["action"] == "allow"
    assert all(r["zone"] == "final" for r in final.values())
    assert {r["action"] for r in temp.values()} == {"flag"}
    assert "written approval" not in final["unknown_camera.jpg"]["reason"]
    assert "In zone final" in final["ai_iptc_generated.jpg"]["reason"]


def test_check_exit_codes(delivery: Path, samples: Path) -> None:
    failing = run("check", delivery / "ep101" / "final")
    assert failing.exit_code == 1
    assert "HELD block" in failing.stderr and "ai_iptc_generated.jpg" in failing.stderr
    assert "gate FAILED" in failing.stderr
    passing = run("check", delivery / "ep101" / "temp")
    assert passing.exit_code == 0, passing.stderr
    clean = run("check", samples / "unknown_camera.jpg", "--zone", "final")
    assert clean.exit_code == 0
    assert run("check", delivery, "--zone", "nonsense").exit_code == 2
    assert run("check").exit_code == 2


def test_check_reads_a_file_list(delivery: Path, tmp_path: Path) -> None:
    final = delivery / "ep101" / "final"
    listing = "\n".join(str(final / n) for n in ("unknown_camera.jpg", "human_capture.jpg"))
    assert run("check", "--from", "-", input=listing + "\n").exit_code == 0
    listing += f"\n{final / 'ai_genfill_composite.jpg'}\n"
    result = run("check", "--from", "-", "--json", input=listing)
    assert result.exit_code == 1
    assert {r["action"] for r in json.loads(result.stdout)} == {"allow", "escalate"}


def test_check_is_read_only_by_default(delivery: Path) -> None:
    target = delivery / "ep101" / "final" / "ai_iptc_generated.jpg"
    assert run("check", delivery).exit_code == 1
    assert target.exists()


def test_approval_by_fingerprint(delivery: Path) -> None:
    target = delivery / "ep101" / "final" / "ai_genfill_composite.jpg"
    out = run("approve", target, "--ref", "NFX-GENAI-0042", "--by", "Jo Producer")
    assert out.exit_code == 0, out.output
    rec = by_name(run_json("scan", delivery / "ep101" / "final"))["ai_genfill_composite.jpg"]
    assert rec["action"] == "allow"
    assert rec["approval"]["ref"] == "NFX-GENAI-0042"
    assert "NFX-GENAI-0042" in rec["reason"]
    # a changed file is no longer the approved file
    with open(target, "ab") as fh:
        fh.write(b"\0")
    rec = by_name(run_json("scan", delivery / "ep101" / "final"))["ai_genfill_composite.jpg"]
    assert rec["action"] == "escalate" and rec["approval"] is None


def test_expired_and_revoked_approvals_do_not_count(delivery: Path, tmp_path: Path,
                                                    ledger_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from provgate.assets import fingerprint
    from provgate.ledger import Ledger

    final = delivery / "ep101" / "final"
    pol = tmp_path / "p.toml"
    pol.write_text(DEFAULT_POLICY.read_text().replace(
        '# roots = ["/srv/delivery"]', f'roots = ["{delivery}"]'))
    monkeypatch.setenv("PROVGATE_POLICY", str(pol))
    approved = final / "ai_genfill_composite.jpg"
    past = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    with Ledger(ledger_path) as led:  # an approval that has expired since it was given
        led.add_approval(ref="OLD-1", approver="A", expires=past, path=str(approved),
                         fingerprint=fingerprint(str(approved)))
    assert by_name(run_json("scan", final))["ai_genfill_composite.jpg"]["action"] == "escalate"
    assert run("approve", str(final) + "/*.jpg", "--ref", "GLOB-2", "--by", "B").exit_code == 0
    recs = by_name(run_json("scan", final))
    assert recs["ai_genfill_composite.jpg"]["approval"]["ref"] == "GLOB-2"
    assert recs["ai_iptc_generated.jpg"]["action"] == "allow"
    listing = json.loads(run("approvals", "--json").stdout)
    assert [a["active"] for a in listing] == [False, True]
    assert run("revoke", str(listing[1]["id"])).exit_code == 0
    assert run("revoke", str(listing[1]["id"])).exit_code == 2  # already revoked
    assert by_name(run_json("scan", final))["ai_iptc_generated.jpg"]["action"] == "block"
    summary = run("check", final, "--zone", "final")
    assert summary.exit_code == 1


def test_approval_glob_outside_roots_is_refused(tmp_path: Path, delivery: Path) -> None:
    pol = tmp_path / "p.toml"
    pol.write_text(DEFAULT_POLICY.read_text().replace(
        '# roots = ["/srv/delivery"]', f'roots = ["{delivery}"]'))
    ok = run("approve", f"{delivery}/ep101/final/*.jpg", "--ref", "R", "--by", "B",
             "--policy", pol)
    assert ok.exit_code == 0, ok.output
    outside = run("approve", f"{tmp_path}/elsewhere/*.jpg", "--ref", "R", "--by", "B",
                  "--policy", pol)
    assert outside.exit_code == 2 and "outside the roots" in outside.output
    escape = run("approve", f"{delivery}/../*.jpg", "--ref", "R", "--by", "B", "--policy", pol)
    assert escape.exit_code == 2
    everything = run("approve", "/**", "--ref", "R", "--by", "B", "--policy", pol)
    assert everything.exit_code == 2 and "whole filesystem" in everything.output


@pytest.mark.parametrize("edit,message", [
    (lambda t: t + "\nunknown_key = 1\n", "Additional properties are not allowed"),
    (lambda t: t.replace('mode = "warn"', 'mode = 3'), "mode"),
    (lambda t: t.replace('ai_generated = "block"', 'ai_generated = "delete"'),
     "zones.final.actions.ai_generated"),
    (lambda t: t.replace('paths = ["**/temp/**"', 'paths = ["****/temp/**"'), "bad glob"),
    (lambda t: t.replace("[zones.temp]", "[zones.temp"), "not valid TOML"),
])
def test_bad_policies_are_refused_with_the_key(tmp_path: Path, samples: Path, edit, message) -> None:
    pol = tmp_path / "bad.toml"
    pol.write_text(edit(DEFAULT_POLICY.read_text()))
    result = run("policy", "validate", pol)
    assert result.exit_code == 2
    assert message in result.output
    assert run("scan", samples, "--policy", pol).exit_code == 2


def test_policy_init_show_validate(tmp_path: Path) -> None:
    target = tmp_path / "provgate.toml"
    assert run("policy", "init", target).exit_code == 0
    assert run("policy", "init", target).exit_code == 2  # never overwrites
    assert run("policy", "validate", target).exit_code == 0
    shown = json.loads(run("policy", "show", "--policy", target).stdout)
    assert shown["digest"] == Policy.load(target).digest
    assert shown["policy"]["zones"]["final"]["actions"]["ai_generated"] == "block"


def test_c2pa_state_floor_and_zone_override(tmp_path: Path, samples: Path) -> None:
    pol = tmp_path / "p.toml"
    pol.write_text(DEFAULT_POLICY.read_text().replace(
        "invalid = \"escalate\"", "invalid = \"escalate\"\nabsent = \"flag\""))
    rec = by_name(run_json("scan", samples, "--zone", "final", "--policy", pol))
    assert rec["unknown_camera.jpg"]["action"] == "flag"
    assert rec["unknown_camera.jpg"]["rule"] == "zones.final.c2pa.absent"


def test_audit_and_warn_modes_move_nothing(delivery: Path, quarantine_dir: Path) -> None:
    for mode, outcome in (("audit", "would quarantine"), ("warn", "left in place")):
        recs = by_name(run_json("scan", delivery / "ep101" / "final", "--mode", mode))
        assert recs["ai_iptc_generated.jpg"]["outcome"].startswith(outcome)
    assert (delivery / "ep101" / "final" / "ai_iptc_generated.jpg").exists()
    assert not quarantine_dir.exists() or not any(quarantine_dir.rglob("*.jpg"))


def test_webhook_and_command_notifiers(tmp_path: Path, delivery: Path) -> None:
    import http.server
    import threading
    got: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a) -> None:
            pass
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "notified.jsonl"
    pol = tmp_path / "p.toml"
    pol.write_text(DEFAULT_POLICY.read_text() + f"""
[[notifiers]]
type = "webhook"
url = "http://127.0.0.1:{server.server_port}/hook"
min_action = "escalate"

[[notifiers]]
type = "command"
command = ["sh", "-c", "cat >> {out}; echo >> {out}"]
min_action = "flag"

[[notifiers]]
type = "webhook"
url = "http://127.0.0.1:9/refused"
min_action = "block"
""")
    recs = run_json("scan", delivery, "--policy", pol)
    server.shutdown()
    held = [r for r in recs if r["action"] in ("escalate", "block")]
    assert sorted(g["path"] for g in got) == sorted(r["path"] for r in held)
    assert all("provgate approve" in g["approve_command"] for g in got)
    lines = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
    assert len(lines) == sum(1 for r in recs if r["action"] != "allow")
    blocked = [r for r in recs if r["action"] == "block"][0]
    assert any("notifier webhook failed" in w for w in blocked["warnings"])
