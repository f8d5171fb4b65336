"""ASC MHL histories: a delivery whose files are not what its history lists is held (real
ExifTool, real files, histories written as the ASC MHL v2.0 format and the reference `ascmhl`
tool write them; the tool's own histories too when it is installed)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import jsonschema
import pytest
import xxhash

from conftest import run
from provgate import data, mhl

FILM = Path(__file__).resolve().parent.parent / "sample_media" / "film"
DATE = "2024-05-02T10:00:00+00:00"
DIGESTS = {"xxh64": lambda b: xxhash.xxh64(b).hexdigest(),
           "md5": lambda b: hashlib.md5(b).hexdigest()}


def write_generation(root: Path, number: int, fmt: str = "xxh64",
                     skip: tuple[str, ...] = ()) -> Path:
    """A generation listing every file under ``root`` (as ``ascmhl create`` does), and the
    chain naming every generation with the C4 id of its bytes."""
    entries = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith("ascmhl/") and rel not in skip:
            entries.append(f'    <hash>\n      <path size="{p.stat().st_size}" lastmodification'
                           f'date="{DATE}">{rel}</path>\n      <{fmt} action="original" '
                           f'hashdate="{DATE}">{DIGESTS[fmt](p.read_bytes())}</{fmt}>\n'
                           "    </hash>\n")
    folder = root / "ascmhl"
    folder.mkdir(exist_ok=True)
    gen = folder / f"{number:04d}_{root.name}_2024-05-02_100000Z.mhl"
    gen.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<hashlist version="2.0" xmlns="urn:ASC:MHL:v2.0">'
        f"\n  <creatorinfo>\n    <creationdate>{DATE}</creationdate>\n    <hostname>dit-cart"
        '</hostname>\n    <tool version="1.2">ascmhl</tool>\n  </creatorinfo>\n  <processinfo>'
        "\n    <process>in-place</process>\n    <ignore><pattern>.DS_Store</pattern><pattern>"
        f"ascmhl</pattern></ignore>\n  </processinfo>\n  <hashes>\n{''.join(entries)}"
        "  </hashes>\n</hashlist>\n")
    write_chain(root)
    return gen


def write_chain(root: Path) -> None:
    listed = "".join(
        f'  <hashlist sequencenr="{int(g.name[:4])}">\n    <path>{g.name}</path>\n    <c4>'
        f"{mhl.c4_id(hashlib.sha512(g.read_bytes()).digest())}</c4>\n  </hashlist>\n"
        for g in sorted((root / "ascmhl").glob("*.mhl")))
    (root / "ascmhl" / "ascmhl_chain.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<ascmhldirectory xmlns="urn:ASC:MHL:DIRECTORY:'
        f'v2.0">\n{listed}</ascmhldirectory>\n')


@pytest.fixture
def card(tmp_path: Path) -> Path:
    """A camera card in a final delivery: a DPX scan and a dialogue WAV, with no history."""
    if not FILM.is_dir():
        pytest.skip("sample_media/film is made by `make samples`")
    root = tmp_path / "delivery" / "final" / "A001"
    shutil.copytree(FILM / "scan_dpx", root / "scan")
    (root / "sound").mkdir()
    shutil.copy2(FILM / "audio" / "sh030_dialogue.wav", root / "sound")
    return root


def check(path: Path) -> tuple[int, dict | None, str]:
    """``provgate check --json``: its exit code, the ASC MHL record and the messages."""
    result = run("check", str(path), "--json")
    found = [r for r in json.loads(result.stdout) if r.get("unit") == "mhl"]
    for rec in found:
        jsonschema.validate(rec, data.schema("unit"))
    assert len(found) <= 1
    return result.exit_code, (found[0] if found else None), result.stderr


def test_hashes_are_those_of_the_reference_implementation(tmp_path: Path) -> None:
    # what `ascmhl create -h md5 -h sha1 -h xxh64 -h xxh3 -h xxh128 -h c4` wrote for "hello\n"
    f = tmp_path / "a.txt"
    f.write_bytes(b"hello\n")
    assert {fmt: mhl.hash_file(str(f), fmt) for fmt in mhl.PREFERENCE if fmt != "xxh32"} == {
        "md5": "b1946ac92492d2347c6235b4d2611184",
        "sha1": "f572d396fae9206628714fb2ce00f72e94f2258f",
        "xxh64": "e4c191d091bd8853",
        "xxh3": "99fc819aaba2462a",
        "xxh128": "6bba86c7e069f56d5a10b435f1c8e49c",
        "c4": "c45dkQrAqUiR8WzPGgn6fAGji3VAVeAE7cKVG4G53ou9dTk4Nzb9vFYEwzy9jq5ZKQKM64DMpPpVbYe2bMsZP2"
              "yYKi"}


def test_a_delivery_that_is_what_its_history_lists_passes(card: Path) -> None:
    code, rec, _ = check(card)
    assert code == 0 and rec is None  # no history: no record
    write_generation(card, 1)
    code, rec, err = check(card)
    assert code == 0, err
    assert rec is not None and rec["action"] == "allow" and rec["problems"] == []
    assert rec["path"] == str(card) and rec["files"] == 7 and rec["generations"] == 1
    assert rec["hash_formats"] == ["xxh64"] and rec["reason"].startswith("ASC MHL: 7 of 7")
    # a frame checked on its own is checked against the history above it
    code, rec, _ = check(card / "scan" / "sc01_scan_0086401.dpx")
    assert code == 0 and rec is not None and rec["files"] == 1


def test_an_altered_file_holds_the_delivery_and_is_named(card: Path) -> None:
    write_generation(card, 1, fmt="md5")
    frame = card / "scan" / "sc01_scan_0086402.dpx"
    body = bytearray(frame.read_bytes())
    body[-1] ^= 1  # same size: only its hash tells
    frame.write_bytes(bytes(body))
    code, rec, err = check(card)
    assert code == 1
    assert rec is not None and rec["action"] in ("escalate", "block")
    assert rec["problems"] == [p for p in rec["problems"] if "sc01_scan_0086402.dpx" in p]
    assert "does not match the ASC MHL: md5" in rec["problems"][0]
    assert rec["reason"].startswith("ASC MHL: 6 of 7") and "1 altered" in rec["reason"]
    assert f"HELD {rec['action']}: {card}: ASC MHL" in err and "gate FAILED" in err


def test_a_file_added_after_the_history_holds_it(card: Path) -> None:
    write_generation(card, 1)
    shutil.copy2(card / "scan" / "sc01_scan_0086405.dpx", card / "scan" / "sc01_scan_0086406.dpx")
    code, rec, _ = check(card)
    assert code == 1 and rec is not None and rec["action"] != "allow"
    assert rec["problems"] == ["scan/sc01_scan_0086406.dpx is not in the ASC MHL history (added "
                               "after it was made, or left out of it)"]


def test_a_listed_file_missing_from_the_delivery_holds_it(card: Path) -> None:
    write_generation(card, 1)
    (card / "sound" / "sh030_dialogue.wav").unlink()
    code, rec, _ = check(card)
    assert code == 1 and rec is not None
    assert rec["problems"] == ["sound/sh030_dialogue.wav is listed by generation 1 but is not "
                               "in the delivery"]
    # checking a part of the tree says nothing of the files outside it
    code, rec, _ = check(card / "scan")
    assert code == 0 and rec is not None and rec["files"] == 6


def test_the_newest_generation_and_the_chain_are_checked(card: Path) -> None:
    write_generation(card, 1)
    frame = card / "scan" / "sc01_scan_0086400.dpx"
    frame.write_bytes(frame.read_bytes() + b"regraded")
    second = write_generation(card, 2)  # re-hashed where it was regraded: it passes
    code, rec, _ = check(card)
    assert code == 0 and rec is not None and rec["generations"] == 2
    # a generation changed after the chain named it is not the history's
    second.write_text(second.read_text().replace("dit-cart", "elsewhere"))
    code, rec, _ = check(card)
    assert code == 1 and rec is not None
    (problem,) = rec["problems"]
    assert problem.startswith(f"generation {second.name} is not the one ascmhl_chain.xml names")
    (card / "ascmhl" / "ascmhl_chain.xml").unlink()
    history = mhl.read(str(card))
    assert [p.kind for p in history.problems] == ["unverifiable", "unverifiable",
                                                  "unverifiable"]
    write_chain(card)
    first = next((card / "ascmhl").glob("0001_*.mhl"))
    first.unlink()
    assert [p.message for p in mhl.read(str(card)).problems] == [
        f"generation 1 ({first.name}) named by ascmhl_chain.xml is missing"]


def test_a_hash_provgate_cannot_compute_is_not_a_pass(card: Path) -> None:
    gen = write_generation(card, 1)
    gen.write_text(gen.read_text().replace("xxh64", "sha256"))
    write_chain(card)
    found = mhl.check(str(card), [str(card / "sound" / "sh030_dialogue.wav")])
    assert found.verified == 0
    assert [(p.kind, p.message) for p in found.problems] == [
        ("unverifiable", "sound/sh030_dialogue.wav: the ASC MHL gives no hash provgate can "
                         "compute (sha256)")]


def test_nested_histories_cover_their_own_tree(card: Path) -> None:
    write_generation(card / "scan", 1)
    write_generation(card, 1)
    covered = mhl.covering(str(p) for p in card.rglob("*") if p.is_file())
    assert sorted(covered) == [str(card), str(card / "scan")]
    assert len(covered[str(card / "scan")]) == 6
    assert covered[str(card)] == [str(card / "sound" / "sh030_dialogue.wav")]


@pytest.mark.parametrize("body, why", [
    ("<hashlist>" + "<a>" * 100_000 + "</a>" * 100_000 + "</hashlist>", "nested deeper"),
    ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
     "<hashlist><hashes><hash><path>&lol2;</path></hash></hashes></hashlist>", "refused"),
    ('<hashlist><hashes><hash><path>../../etc/passwd</path><md5 action="original">'
     "00</md5></hash></hashes></hashlist>", "'..' leads out"),
    ("<hashlist><hashes><hash><path>" + "x" * 100_000 + "</path></hash></hashes></hashlist>",
     "longer than"),
    ("<hashlist><hashes><hash><path>a", "not well-formed"),
])
def test_a_crafted_history_is_refused_bounded(tmp_path: Path, body: str, why: str) -> None:
    root = tmp_path / "card"
    root.mkdir()
    (root / "a").write_bytes(b"a")
    write_generation(root, 1).write_text(body)
    write_chain(root)
    started = time.monotonic()
    found = mhl.check(str(root), [str(root / "a")], complete=True)
    assert time.monotonic() - started < 5
    assert any(why in p.message for p in found.problems), found.problems
    assert found.verified == 0 and not any("named by" in p.message for p in found.problems)


def test_a_huge_or_endless_history_is_refused_before_it_costs(
        card: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = write_generation(card, 1)
    with open(gen, "ab") as f:  # sparse: 256 MiB and one byte, written in no time
        f.truncate(mhl.MAX_MHL_BYTES + 1)
    started = time.monotonic()
    found = mhl.check(str(card), [str(p) for p in (card / "scan").iterdir()])
    assert time.monotonic() - started < 2 and found.verified == 0
    assert any("larger than 256 MiB: refused" in p.message for p in found.problems)
    # so many entries that the element cap is reached: refused, not read on
    gen.write_text("<hashlist><hashes>" + "<hash><path>f</path></hash>" * 600 +
                   "</hashes></hashlist>")
    write_chain(card)
    monkeypatch.setattr(mhl, "MAX_ELEMENTS", 1000)
    history = mhl.read(str(card))
    assert any("more than 1000 elements" in p.message for p in history.problems)


def test_the_reference_tools_histories(card: Path) -> None:
    """Histories the reference implementation writes (`pip install ascmhl` in a venv of its
    own: it pins Click 8.1), a failed verification it recorded included."""
    tool = shutil.which("ascmhl") or os.environ.get("PROVGATE_ASCMHL")
    if not tool:
        pytest.skip("the ascmhl tool is not installed")
    subprocess.run([tool, "create", str(card), "-h", "xxh128", "-h", "c4"], check=True,
                   capture_output=True)
    code, rec, _ = check(card)
    assert code == 0 and rec is not None and rec["hash_formats"] == ["xxh128"]
    frame = card / "scan" / "sc01_scan_0086403.dpx"
    body = bytearray(frame.read_bytes())
    body[100] ^= 1
    frame.write_bytes(bytes(body))
    # the tool records the mismatch as a failed verification in a second generation
    assert subprocess.run([tool, "create", str(card), "-h", "c4"],
                          capture_output=True).returncode != 0
    code, rec, _ = check(card)
    assert code == 1 and rec is not None and rec["generations"] == 2
    (problem,) = rec["problems"]
    assert problem.startswith("scan/sc01_scan_0086403.dpx does not match the ASC MHL: xxh128")
    assert problem.endswith("(generation 1); generation 2 recorded the mismatch")


def test_an_altered_file_fails_the_gate_with_frames_too(card: Path) -> None:
    """With --frames (and through the hook, and for a cut) every file's record is printed;
    the history's record still holds the gate."""
    write_generation(card, 1, fmt="md5")
    frame = card / "scan" / "sc01_scan_0086402.dpx"
    body = bytearray(frame.read_bytes())
    body[-1] ^= 1
    frame.write_bytes(bytes(body))
    result = run("check", str(card), "--json", "--frames")
    assert result.exit_code == 1, result.stderr
    assert any(r.get("unit") == "mhl" for r in json.loads(result.stdout))


def test_a_file_is_checked_with_the_hash_its_fingerprinting_read_took(
        card: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No file of the delivery is read a second time for its ASC MHL hash (a spy on the
    MHL's own reader), and an altered file is still caught."""
    write_generation(card, 1)
    reads: list[str] = []
    real = mhl.hash_file
    monkeypatch.setattr(mhl, "hash_file", lambda path, fmt: reads.append(path)
                        or real(path, fmt))
    code, rec, err = check(card)
    assert code == 0 and rec is not None and rec["problems"] == [], err
    frame = card / "scan" / "sc01_scan_0086402.dpx"
    body = bytearray(frame.read_bytes())
    body[-1] ^= 1
    frame.write_bytes(bytes(body))
    code, rec, _ = check(card)
    assert code == 1 and any("sc01_scan_0086402.dpx" in p for p in rec["problems"])
    assert reads == []
