"""hooks/pre-delivery: the real script, run by the system's sh (dash on Debian), against the real
provgate on real sample media. Each door of issue 10 that went through the hook is walked the
way it was found: options read as file names, a file named ``--report`` swept in by ``*``."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXPECTED, ROOT, SAMPLES, run
from provgate import data

HOOK = ROOT / "hooks" / "pre-delivery"
PROVGATE = Path(sys.executable).parent / "provgate"
AI = "ai_iptc_generated.jpg"          # ai_generated: blocked in final, flagged elsewhere
COMPOSITE = "ai_genfill_composite.jpg"  # ai_composite: escalated in final
CLEAN = "human_capture.jpg"           # human: allowed everywhere
AI_SAMPLES = sorted(n for n, kind in EXPECTED.items() if kind == "ai_generated"
                    and n.endswith((".jpg", ".png")))


def hook(*args: object, cwd: Path | None = None, stdin: str | None = None,
         **env: str) -> subprocess.CompletedProcess[str]:
    """Run the hook as a transfer tool would: through sh, provgate chosen by PROVGATE."""
    full = {**os.environ, "PROVGATE": str(PROVGATE)}
    full.pop("PROVGATE_ZONE", None)
    full.update(env)
    return subprocess.run(["sh", str(HOOK), *map(str, args)], cwd=cwd, env=full, input=stdin,
                          capture_output=True, text=True, timeout=180)


def sh_glob(folder: Path, pattern: str = "*") -> subprocess.CompletedProcess[str]:
    """`cd FOLDER && hooks/pre-delivery *`: sh itself expands the glob, as in a transfer
    tool's pre-transfer script."""
    line = f"cd {shlex.quote(str(folder))} && {shlex.quote(str(HOOK))} {pattern}"
    env = {**os.environ, "PROVGATE": str(PROVGATE)}
    env.pop("PROVGATE_ZONE", None)
    return subprocess.run(["sh", "-c", line], env=env, capture_output=True, text=True,
                          timeout=180)


def ledger_paths() -> list[str]:
    """Every path the ledger (PROVGATE_LEDGER, set per test by conftest) has a decision for."""
    ledger = Path(os.environ["PROVGATE_LEDGER"])
    if not ledger.exists():
        return []
    with sqlite3.connect(ledger) as db:
        return [row[0] for row in db.execute("SELECT path FROM decisions")]


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.iterdir() if p.is_file()}


def outgoing(tmp_path: Path, *names: str, folder: str = "outgoing") -> Path:
    """A delivery folder whose name says nothing about zones, holding copies of samples."""
    dest = tmp_path / folder
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(SAMPLES / name, dest / name)
    return dest


def held_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("HELD ")]


# -- options are options --------------------------------------------------------------------

def test_zone_final_is_an_option_not_a_file(tmp_path: Path) -> None:
    # the door: `hooks/pre-delivery --zone final DIR` passed, with ledger rows named --zone
    out = outgoing(tmp_path, AI, CLEAN)
    for args in (["--zone", "final", out], ["--zone=final", out]):
        result = hook(*args)
        assert result.returncode == 1, result.stderr
        assert f"HELD block: {out / AI}" in result.stderr
        assert "gate FAILED" in result.stderr
    paths = ledger_paths()
    assert sorted(set(paths)) == sorted(str(out / n) for n in (AI, CLEAN))
    assert not any(Path(p).name in ("--zone", "final", "--zone=final") for p in paths)


def test_policy_file_is_an_option_not_a_file(tmp_path: Path) -> None:
    # a policy under which a generated image in final is escalated, not blocked: the records
    # say escalate only if the hook handed the file to provgate as --policy
    from provgate.policy import DEFAULT_POLICY

    policy = tmp_path / "studio policy.toml"
    text = DEFAULT_POLICY.read_text()
    text, n = re.subn(r'(\[zones\.final\.actions\][^\[]*?ai_generated\s*=\s*)"block"',
                      r'\1"escalate"', text)
    assert n == 1
    policy.write_text(text)
    out = outgoing(tmp_path, AI, CLEAN)
    report = tmp_path / "report.json"
    for args in (["--policy", policy], [f"--policy={policy}"]):
        result = hook("--report", report, *args, out)
        assert result.returncode == 1, result.stderr
        actions = {Path(r["path"]).name: r["action"]
                   for r in json.loads(report.read_text())["records"]}
        assert actions == {AI: "escalate", CLEAN: "allow"}
        assert f"HELD escalate: {out / AI}" in result.stderr
    assert not any(Path(p).name in ("--policy", policy.name) for p in ledger_paths())
    # a policy that is not there is provgate's usage error, not a missing "file" that passes
    result = hook("--policy", tmp_path / "nope.toml", out)
    assert result.returncode == 2, result.stderr


def test_help_alone_prints_usage_and_passes_nothing(tmp_path: Path) -> None:
    for flag in ("--help", "-h"):
        result = hook(flag)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: pre-delivery")
    assert ledger_paths() == []


def test_help_with_other_arguments_is_a_usage_error(tmp_path: Path) -> None:
    # the door: `--help` became a missing file and the gate passed the rest
    out = outgoing(tmp_path, AI)
    for args in (["--help", out], ["-h", out], ["--zone", "final", "--help", out],
                 ["--help=yes"]):
        result = hook(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "only understood alone" in result.stderr
        assert result.stdout == ""
    assert ledger_paths() == []


def test_usage_lists_every_check_option() -> None:
    """Every option `provgate check` has is one the hook passes through (a new check option
    the hook does not know would be refused as unknown: this test says so first)."""
    check_help = subprocess.run([str(PROVGATE), "check", "--help"], capture_output=True,
                                text=True, check=True).stdout
    check_opts = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+|-[a-z])\b", check_help))
    usage = hook("--help").stdout
    missing = sorted(o for o in check_opts if not re.search(rf"(?<![\w-]){o}\b", usage))
    assert missing == ["--json-report"]  # what the hook's own --report asks for
    assert "--report" in usage and "PROVGATE_ZONE" in usage


def test_unknown_option_is_refused_with_exit_2(tmp_path: Path) -> None:
    out = outgoing(tmp_path, AI)
    cases = {
        ("--zonee", "final", str(out)): "unknown option '--zonee'",
        ("--delivery-folder", str(out)): "unknown option '--delivery-folder'",
        ("-x", str(out)): "unknown option '-x'",
        ("--zone",): "--zone needs a value",
        ("--zone", "--policy", "p.toml", str(out)): "--zone needs a value, not '--policy'",
        ("--rescan=yes", str(out)): "--rescan takes no value",
        ("--report", "r.json", "--csv", str(out)): "cannot be combined with --csv",
        (): "give PATHs, --from FILE or --timeline CUT",
    }
    for args, message in cases.items():
        result = hook(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert ledger_paths() == []
    assert not (tmp_path / "r.json").exists()


# -- the zone -------------------------------------------------------------------------------

def test_default_zone_is_final(tmp_path: Path) -> None:
    # `outgoing/` matches no zone of the policy: the hook gates it as a deliverable anyway
    out = outgoing(tmp_path, AI, COMPOSITE, CLEAN)
    report = tmp_path / "report.json"
    result = hook("--report", report, out)
    assert result.returncode == 1, result.stderr
    records = {Path(r["path"]).name: r for r in json.loads(report.read_text())["records"]}
    assert {r["zone"] for r in records.values()} == {"final"}
    assert records[AI]["action"] == "block" and records[COMPOSITE]["action"] == "escalate"
    assert records[CLEAN]["action"] == "allow"
    # the same folder through provgate itself, without the hook, is not final
    plain = subprocess.run([str(PROVGATE), "check", "--json", str(out)], capture_output=True,
                           text=True, timeout=180)
    assert {r["zone"] for r in json.loads(plain.stdout)} != {"final"}


def test_provgate_zone_and_zone_option_change_it(tmp_path: Path) -> None:
    out = outgoing(tmp_path, AI, CLEAN)
    by_env = hook(out, PROVGATE_ZONE="working")
    assert by_env.returncode == 0, by_env.stderr
    assert "gate passed" in by_env.stderr and held_lines(by_env.stderr) == []
    # --zone wins over the environment
    by_option = hook("--zone", "working", out, PROVGATE_ZONE="final")
    assert by_option.returncode == 0, by_option.stderr
    strict = hook("--zone", "final", out, PROVGATE_ZONE="working")
    assert strict.returncode == 1, strict.stderr


# -- file names can never steer the hook ----------------------------------------------------

def test_file_named_report_swept_in_by_glob(tmp_path: Path) -> None:
    # the door: in a folder holding a file named --report, `hooks/pre-delivery *` overwrote a
    # delivery file with the JSON report and never gated it
    folder = outgoing(tmp_path, *AI_SAMPLES[:3], CLEAN, folder="EP101/final")
    (folder / "--report").write_bytes((SAMPLES / AI_SAMPLES[0]).read_bytes())
    before = digests(folder)
    result = sh_glob(folder)
    assert result.returncode == 2, result.stderr  # a usage error: never a pass
    assert "'--report' is also the name of a file here" in result.stderr
    assert "gate passed" not in result.stderr
    assert digests(folder) == before  # nothing overwritten, nothing added
    assert ledger_paths() == []


@pytest.mark.parametrize("planted", [
    ("--report", "a_manifest.json"),  # an existing JSON file next in line: would be replaced
    ("--zone", "temp"),               # `--zone temp ai.jpg...`: the AI images would pass
    ("--help",),                      # `--help ai.jpg...`
    ("--",),                          # `-- ai.jpg`: a file named -- would never be gated
])
def test_option_names_planted_as_files_are_refused(tmp_path: Path,
                                                   planted: tuple[str, ...]) -> None:
    folder = outgoing(tmp_path, *AI_SAMPLES[:2], folder="EP101/final")
    for name in planted:
        (folder / name).write_text("[]\n" if name.endswith(".json") else "planted\n")
    before = digests(folder)
    result = sh_glob(folder)
    assert result.returncode == 2, result.stderr
    assert f"'{planted[0]}' is also the name of a file here" in result.stderr
    assert digests(folder) == before
    assert ledger_paths() == []
    # the way out the message names: ./* is all paths, and the AI images are held
    named = sh_glob(folder, "./*")
    assert named.returncode == 1, named.stderr
    assert len([line for line in held_lines(named.stderr) if "HELD block" in line]) == 2
    assert digests(folder) == before


def test_only_file_named_help_is_gated_not_obeyed(tmp_path: Path) -> None:
    # a folder whose one file is a generated image named --help: `*` is `--help` alone
    folder = tmp_path / "EP101" / "final"
    folder.mkdir(parents=True)
    shutil.copy2(SAMPLES / AI, folder / "--help")
    result = sh_glob(folder)
    assert result.returncode == 2, result.stderr
    assert "usage:" not in result.stdout
    named = hook("--", "--help", cwd=folder)
    assert named.returncode == 1, named.stderr
    assert "HELD block: --help" in named.stderr


def test_leading_dash_after_the_first_path_is_a_file(tmp_path: Path) -> None:
    out = outgoing(tmp_path, CLEAN)
    shutil.copy2(SAMPLES / AI, out / "-ai.jpg")
    shutil.copy2(SAMPLES / AI, out / "--zone")
    report = tmp_path / "report.json"
    result = hook("--report", report, CLEAN, "-ai.jpg", "--zone", cwd=out)
    assert result.returncode == 1, result.stderr
    records = {Path(r["path"]).name: r for r in json.loads(report.read_text())["records"]}
    assert records["-ai.jpg"]["action"] == "block"
    assert records["--zone"]["action"] == "block"  # a file, judged, not an option
    assert records[CLEAN]["action"] == "allow"
    assert {r["zone"] for r in records.values()} == {"final"}
    assert "HELD block: -ai.jpg" in result.stderr
    # after `--` too; here `--zone` as an option is refused since a file has that name (it
    # may come from a glob), `--zone=working` is not
    assert hook("--zone", "working", "--", "-ai.jpg", cwd=out).returncode == 2
    dashed = hook("--zone=working", "--", "-ai.jpg", cwd=out)
    assert dashed.returncode == 0, dashed.stderr
    # an option word after a path that names no file is a missing path, not an option
    missing = hook(CLEAN, "--policy", "x.toml", cwd=out)
    assert missing.returncode == 2, missing.stderr
    assert "--policy" in missing.stderr
    assert not any(Path(p).name in ("--policy", "x.toml") for p in ledger_paths())


# -- the report ------------------------------------------------------------------------------

def test_report_writes_json_and_stderr_still_lists_held_files(tmp_path: Path) -> None:
    out = outgoing(tmp_path, AI, COMPOSITE, CLEAN, folder="EP101/final")
    reports = tmp_path / "EP101" / "reports"
    reports.mkdir()
    result = hook("--report", "out.json", out, cwd=reports)
    assert result.returncode == 1, result.stderr
    doc = json.loads((reports / "out.json").read_text())
    records = doc["records"]
    for rec in records:
        data.validate(rec, "decision", rec["path"])
    assert {Path(r["path"]).name: r["action"] for r in records} == {
        AI: "block", COMPOSITE: "escalate", CLEAN: "allow"}
    assert result.stdout == ""
    held = held_lines(result.stderr)
    assert len(held) == 2, result.stderr
    assert any(line.startswith(f"HELD block: {out / AI}") for line in held), result.stderr
    assert any(line.startswith(f"HELD escalate: {out / COMPOSITE}") for line in held)
    assert result.stderr.count("provgate approve ") == 2
    assert "gate FAILED" in result.stderr
    # the verdict and the ledger's chain head at its moment, as a checkpoint says it
    assert (doc["verdict"], doc["exit_code"]) == ("FAILED", 1)
    assert doc["ledger_head"]["chain"] == "decisions" and doc["ledger_head"]["count"] >= 3
    assert sorted(p.name for p in reports.iterdir()) == ["out.json"]  # no temp file left
    # an earlier report is replaced; a pass writes one too
    passed = hook("--report", reports / "out.json", "--zone", "working", out)
    assert passed.returncode == 0, passed.stderr
    assert {r["zone"] for r in json.loads((reports / "out.json").read_text())["records"]} == {
        "working"}


def test_report_refused_over_a_file_that_is_not_a_report(tmp_path: Path) -> None:
    out = outgoing(tmp_path, AI, CLEAN, folder="EP101/final")
    elsewhere = outgoing(tmp_path, CLEAN, folder="EP101/stills")
    notes = tmp_path / "notes.txt"
    notes.write_text("  delivery notes\n")
    empty = tmp_path / "empty.json"
    empty.write_text("")
    def state() -> dict[str, object]:
        return {"final": digests(out), "stills": digests(elsewhere), "notes": notes.read_text()}

    before = state()
    for target in (elsewhere / CLEAN, notes, empty, tmp_path):
        result = hook("--report", target, out)
        assert result.returncode == 2, (target, result.stderr)
        assert f"--report {target}" in result.stderr
        assert "gate passed" not in result.stderr
    assert state() == before
    assert empty.read_text() == ""
    assert ledger_paths() == []
    missing = hook("--report", tmp_path / "no such folder" / "r.json", out)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_report_refused_inside_the_delivery(tmp_path: Path) -> None:
    out = outgoing(tmp_path, AI, CLEAN, folder="EP101/final")
    before = digests(out)
    episode = tmp_path / "EP101"
    link = tmp_path / "EP101-link"
    link.symlink_to(episode)
    cases = [
        (out / "provgate.json", [out]),                 # a new file in the delivery
        (out / "provgate.json", [episode]),             # below a gated folder
        (link / "final" / "r.json", [out]),             # the same place through a symlink
        (out / "r.json", ["-", out]),                   # a later path holds it
        (out / "r.json", [out / CLEAN]),                # beside a gated file
        ("r.json", ["./" + CLEAN, AI]),                 # `--report r.json *`, cwd the delivery
    ]
    for report, paths in cases:
        result = hook("--report", report, "--", *paths, cwd=out)
        assert result.returncode == 2, (report, paths, result.stderr)
        assert "which is being gated" in result.stderr
    # a gated file that is itself an earlier JSON report is not overwritten either
    (out / "old.json").write_text("[]\n")
    before = digests(out)
    same = hook("--report", out / "old.json", out / "old.json", out / AI)
    assert same.returncode == 2 and "which is being gated" in same.stderr
    # the same through the --from list on stdin: `find .../final | hooks/pre-delivery --from -`
    for listing in (f"{out}\n", f"{out / AI}\n{out / CLEAN}\n"):
        piped = hook("--from", "-", "--report", out / "r.json", stdin=listing)
        assert piped.returncode == 2 and "which is being gated" in piped.stderr
    assert digests(out) == before
    assert ledger_paths() == []
    # beside the delivery is where the README puts it
    beside = hook("--report", episode / "provgate.json", out)
    assert beside.returncode == 1, beside.stderr
    names = {Path(r["path"]).name
             for r in json.loads((episode / "provgate.json").read_text())["records"]}
    assert {AI, CLEAN} <= names
    assert digests(out) == before


def test_no_report_when_provgate_did_not_judge(tmp_path: Path) -> None:
    out = outgoing(tmp_path, AI)
    report = tmp_path / "r.json"
    report.write_text('[{"earlier": true}]')
    typo = hook("--report", report, out.parent / "outgoign")
    assert typo.returncode == 2, typo.stderr
    assert "outgoign" in typo.stderr and "no report written" in typo.stderr
    assert json.loads(report.read_text()) == [{"earlier": True}]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["r.json"]


# -- passing options through, exit codes ------------------------------------------------------

def test_every_check_option_is_passed_through(tmp_path: Path) -> None:
    from provgate.policy import DEFAULT_POLICY

    out = outgoing(tmp_path, AI, CLEAN, "ai_comfyui.png")
    shutil.copy2(SAMPLES / AI, out / "skip_me.jpg")
    # a policy that escalates generated media outside final (the default flags it): the
    # records show it was read
    policy = tmp_path / "p.toml"
    text, n = re.subn(r'(\[actions\][^\[]*?ai_generated\s*=\s*)"flag"', r'\1"escalate"',
                      DEFAULT_POLICY.read_text())
    assert n == 1
    policy.write_text(text)
    ledger = tmp_path / "own" / "ledger.db"
    ledger.parent.mkdir()
    quarantine = tmp_path / "q"
    exiftool = shutil.which("exiftool")
    assert exiftool
    listing = tmp_path / "list.txt"
    listing.write_text(f"{out / CLEAN}\n")
    # --include/--exclude leave files unjudged, which only a zone other than final allows
    result = hook(f"--policy={policy}", "--ledger", ledger, "--zone=working", "--mode", "audit",
                  "--quarantine", quarantine, "--include", "*.jpg", "--exclude=skip_*",
                  "--rescan", "--processes", "1", "--timeout=20", "--exiftool", exiftool,
                  "--allow-empty", "-v", "--verbose", "--json", "--from", listing, out)
    assert result.returncode == 1, result.stderr
    records = {Path(r["path"]).name: r for r in json.loads(result.stdout)}
    assert sorted(records) == [AI, CLEAN]  # --include, --exclude
    assert records[AI]["action"] == "escalate" and records[AI]["zone"] == "working"
    assert records[AI]["rule"] == "actions.ai_generated"
    assert ledger.exists() and ledger_paths() == []  # --ledger, not PROVGATE_LEDGER
    assert not quarantine.exists()  # audit: nothing moved
    assert (out / AI).exists()
    for fmt, probe in (("--ndjson", lambda s: [json.loads(x) for x in s.splitlines()]),
                       ("--csv", lambda s: s.splitlines()[1:])):
        other = hook(fmt, "--zone", "working", out)
        assert other.returncode == 0, other.stderr
        assert len(probe(other.stdout)) == 4


def test_allow_empty_is_passed_through(tmp_path: Path) -> None:
    empty = tmp_path / "EP102" / "final"
    empty.mkdir(parents=True)
    assert hook(empty).returncode == 1
    allowed = hook("--allow-empty", empty)
    assert allowed.returncode == 0, allowed.stderr


def test_from_stdin_and_exit_codes(tmp_path: Path) -> None:
    out = outgoing(tmp_path, AI, CLEAN)
    report = tmp_path / "r.json"
    listing = "".join(f"{p}\n" for p in sorted(out.iterdir()))  # find ... | hook --from -
    piped = hook("--report", report, "--from", "-", stdin=listing)
    assert piped.returncode == 1, piped.stderr
    assert len(json.loads(report.read_text())["records"]) == 2
    clean = hook("--from", "-", stdin=f"{out / CLEAN}\n")
    assert clean.returncode == 0, clean.stderr
    # provgate cannot be found: 3, whatever the delivery holds
    gone = hook(out, PROVGATE=str(tmp_path / "no-provgate"))
    assert gone.returncode == 3 and "provgate not found" in gone.stderr
    # run by its #! line, PROVGATE unset: provgate from PATH
    env = {k: v for k, v in os.environ.items() if k != "PROVGATE"}
    env["PATH"] = f"{PROVGATE.parent}:{env['PATH']}"
    on_path = subprocess.run([str(HOOK), str(out)], env=env, capture_output=True,
                             text=True, timeout=180)
    assert on_path.returncode == 1, on_path.stderr


def test_editorial_cut_with_a_dash_name(tmp_path: Path) -> None:
    """(moved from test_gate.py) a cut through the hook, a name starting with '-' beside it."""
    import opentimelineio as otio

    media = tmp_path / "cut media"
    media.mkdir()
    shutil.copy2(SAMPLES / CLEAN, media / "-sh010.jpg")
    tl = otio.schema.Timeline(name="lock")
    track = otio.schema.Track(name="V1")
    track.append(otio.schema.Clip(name="sh010", media_reference=otio.schema.ExternalReference(
        target_url="/Volumes/Edit/-sh010.jpg"), source_range=otio.opentime.TimeRange(
        otio.opentime.RationalTime(0, 24), otio.opentime.RationalTime(24, 24))))
    tl.tracks.append(track)
    otio.adapters.write_to_file(tl, str(tmp_path / "lock.otio"))
    report = tmp_path / "report.json"
    cut = hook("--report", report, "--timeline", tmp_path / "lock.otio", "--media-root",
               f"/Volumes/Edit={media}", media / "-sh010.jpg")
    assert cut.returncode == 0, cut.stderr
    records = json.loads(report.read_text())["records"]
    assert [r["clips"][0]["name"] for r in records if r["clips"]] == ["sh010"]
    only_cut = hook("--timeline", tmp_path / "lock.otio", "--media-root",
                    f"/Volumes/Edit={media}")
    assert only_cut.returncode == 0, only_cut.stderr


def test_script_is_posix_sh() -> None:
    """dash parses it; shellcheck (where installed) finds nothing in POSIX sh mode."""
    assert subprocess.run(["sh", "-n", str(HOOK)]).returncode == 0
    if shutil.which("dash"):
        assert subprocess.run(["dash", "-n", str(HOOK)]).returncode == 0
    checker = shutil.which("shellcheck")
    if checker:
        result = subprocess.run([checker, "-s", "sh", str(HOOK)], capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stdout
    assert os.access(HOOK, os.X_OK)


def test_json_report_is_one_object_and_refuses_another_format(tmp_path: Path) -> None:
    out = outgoing(tmp_path, AI, CLEAN)
    result = run("check", str(out), "--zone", "final", "--json-report")
    doc = json.loads(result.stdout)
    assert result.exit_code == 1 and doc["verdict"] == "FAILED" and doc["exit_code"] == 1
    assert len(doc["records"]) == 2 and doc["ledger_head"]["count"] >= 2
    refused = run("check", str(out), "--json-report", "--csv")
    assert refused.exit_code == 2 and "--json-report writes JSON" in refused.stderr
