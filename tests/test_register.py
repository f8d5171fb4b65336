"""The GenAI register: reading a vendor's declaration (bounded, every problem named by line and
column), which files each entry covers, and the reconciliation with what the files say.

Every register here is a real file written by the test; no timing assertions (a watchdog
interrupts what runs for seconds where it should take milliseconds).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import tomllib
import unicodedata
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conftest import watchdog

from provgate import data, register
from provgate.assets import matches
from provgate.errors import EXIT_USAGE, ConfigError
from provgate.register import (CATEGORIES, COLUMNS, ENVIRONMENTS, MAX_ENTRIES, STAGES, Entry,
                               Finding, Reconciled, Register, action_for, declared_kind, find,
                               finding_actions, load, reconcile)

NAME = "GENAI-DISCLOSURE.csv"
GOOD: dict[str, str] = {
    "id": "GENAI-001", "files": "vfx/sh010/**", "tool": "Runway", "version": "Gen-3 Alpha",
    "purpose": "sky replacement", "category": "creative_output", "environment": "enterprise",
    "trains_on_inputs": "no", "stage": "final", "consent_ref": "", "approval_ref": "STUDIO-1"}

# the [register] table proposed for default_policy.toml (see the report); action_for reads it
PROPOSED_POLICY = """
[register]
undisclosed = "flag"
[register.principles]
trains_on_inputs = "escalate"
consumer_environment = "escalate"
talent_without_consent = "escalate"
final_without_approval = "escalate"

[zones.final.register]
undisclosed = "escalate"
"""


def row(**over: str) -> dict[str, str]:
    return {**GOOD, **over}


def write_csv(folder: Path, rows: list[dict[str, str]], header: tuple[str, ...] = COLUMNS,
              pre: str = "", name: str = NAME, delimiter: str = ",") -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n", delimiter=delimiter)
    w.writerow(header)
    for r in rows:
        w.writerow([r.get(c, "") for c in header])
    path = folder / name
    path.write_text(pre + buf.getvalue(), encoding="utf-8")
    return path


def write_json(folder: Path, doc: Any, name: str = "GENAI-DISCLOSURE.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def problem(path: Path, **kw: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(path, **kw)
    assert info.value.exit_code == EXIT_USAGE
    return str(info.value)


def entry(**over: Any) -> Entry:
    base: dict[str, Any] = {
        "id": "GENAI-001", "files": ("vfx/sh010/**",), "tool": "Runway", "version": "Gen-3",
        "purpose": "sky replacement", "category": "creative_output",
        "environment": "enterprise", "trains_on_inputs": False, "stage": "temp",
        "consent_ref": None, "approval_ref": None, "where": f"{NAME} line 2"}
    return Entry(**{**base, **over})


# -- the schema and the template --------------------------------------------------------------

def test_schema_is_draft_2020_12_and_names_the_columns_and_words_the_module_uses() -> None:
    doc = data.schema("register")
    jsonschema.Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    props = doc["$defs"]["entry"]["properties"]
    assert tuple(props) == COLUMNS
    assert tuple(props["category"]["enum"]) == CATEGORIES
    assert tuple(props["environment"]["enum"]) == ENVIRONMENTS
    assert tuple(props["stage"]["enum"]) == STAGES
    assert doc["properties"]["entries"]["maxItems"] == MAX_ENTRIES


def test_the_template_loads_validates_and_explains_every_column(tmp_path: Path) -> None:
    text = register.template()
    assert text == register.TEMPLATE.read_text(encoding="utf-8")
    reg = load(register.TEMPLATE, root=tmp_path)
    # one example row per category, valid against the schema in its JSON form
    assert sorted(e.category for e in reg.entries) == sorted(CATEGORIES)
    data.validate(reg.to_doc(), "register", "template")
    # every column is explained in a comment line of its own, and the header names them all
    lines = text.splitlines()
    for col in COLUMNS:
        assert any(line.startswith(f"# {col} ") for line in lines), col
    assert f"{','.join(COLUMNS)}" in lines
    # rows left over from the template are reported
    assert reg.warnings and "EXAMPLE-001" in reg.warnings[0]
    # written as a delivery's register, it is found and read like any other
    delivery = tmp_path / "EP101"
    delivery.mkdir()
    (delivery / NAME).write_text(text, encoding="utf-8")
    found = register.discover(delivery)
    assert found is not None and [e.id for e in found.entries] == [e.id for e in reg.entries]
    sky = found.entries_for(delivery / "vfx/sh010/sh010_comp.1001.exr")
    assert [e.id for e in sky] == ["EXAMPLE-002"]
    # the examples show the principles: the consumer tool that trains on its inputs is held
    rules = {f.rule for f in reconcile("unknown", (), [found.entry("EXAMPLE-005")]).findings}
    assert rules == {"principles.trains_on_inputs", "principles.consumer_environment"}
    assert not reconcile("unknown", (), [found.entry("EXAMPLE-003")]).findings


# -- reading ----------------------------------------------------------------------------------

def test_csv_is_read_into_typed_frozen_entries(tmp_path: Path) -> None:
    pre = ("# the register of EP101\n"
           "   # an indented note\n"
           "\n")
    path = write_csv(tmp_path, [
        row(purpose="sky replacement, then a grade", trains_on_inputs="YES",
            category="Creative Output", environment=" Enterprise ", stage="Final"),
        {c: "" for c in COLUMNS},  # a blank row a spreadsheet leaves
        row(id="GENAI-002", files="sh020; sh030", trains_on_inputs="false",
            purpose="voice clone\n# not a comment: inside a quoted value", version="",
            category="talent-performance", consent_ref="RIDER-7", approval_ref=""),
        row(id="GENAI-003", trains_on_inputs="True"),
        row(id="GENAI-004", trains_on_inputs="No"),
    ], pre=pre)
    raw = path.read_bytes()
    path.write_bytes(b"\xef\xbb\xbf" + raw)  # Excel's "CSV UTF-8" starts with a BOM
    reg = load(path)
    assert isinstance(reg, Register) and reg.root == str(tmp_path)
    assert reg.digest == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    first, second, third, fourth = reg.entries
    assert first.where == f"{NAME} line 5"
    assert second.where == f"{NAME} line 7"  # the blank row is skipped, not counted away
    assert first.purpose == "sky replacement, then a grade"
    assert (first.category, first.environment, first.stage) == ("creative_output", "enterprise",
                                                               "final")
    assert [e.trains_on_inputs for e in reg.entries] == [True, False, True, False]
    assert second.files == ("sh020", "sh030")
    assert second.purpose.endswith("# not a comment: inside a quoted value")
    assert second.category == "talent_performance"
    assert second.version is None and second.approval_ref is None
    assert second.consent_ref == "RIDER-7" and first.consent_ref is None
    assert third.id == "GENAI-003" and fourth.id == "GENAI-004"
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.tool = "other"  # type: ignore[misc]
    assert not hasattr(first, "__dict__") and not hasattr(reg, "__dict__")  # slots
    data.validate(reg.to_doc(), "register", "round trip")
    assert reg.entry("GENAI-002") is second


def test_spreadsheet_forms_semicolons_and_quoted_comment_lines(tmp_path: Path) -> None:
    """Excel in many European locales separates with ';', and quotes a note holding one."""
    pre = '"# a note; with a separator";;;;;;;;;;\n'
    path = write_csv(tmp_path, [row(files="sh010;sh020"), row(id="GENAI-002")], pre=pre,
                     delimiter=";")
    reg = load(path)
    assert [e.id for e in reg.entries] == ["GENAI-001", "GENAI-002"]
    assert reg.entries[0].files == ("sh010", "sh020")


def test_json_as_an_object_or_a_bare_array(tmp_path: Path) -> None:
    entries = [
        {**row(), "trains_on_inputs": False, "files": ["vfx/sh010/**", "sh011"],
         "consent_ref": None},
        {**row(id="GENAI-002", files="sh020; sh021"), "trains_on_inputs": True,
         "version": None},
    ]
    a = load(write_json(tmp_path, {"version": 1, "entries": entries}))
    (tmp_path / "b").mkdir()
    b = load(write_json(tmp_path / "b", entries))
    assert [e.to_dict() for e in a.entries] == [e.to_dict() for e in b.entries]
    assert a.entries[0].files == ("vfx/sh010/**", "sh011")
    assert a.entries[1].files == ("sh020", "sh021")
    assert a.entries[1].trains_on_inputs is True and a.entries[1].version is None
    assert a.entries[1].where == "GENAI-DISCLOSURE.json entry 2 (id 'GENAI-002')"
    # the same entry written as CSV reads the same
    c = load(write_csv(tmp_path / "b", [row(files="vfx/sh010/**; sh011")]))
    assert c.entries[0].to_dict() == a.entries[0].to_dict()


# -- every problem names its line and column, and what to write -------------------------------

CSV_CASES = [
    ({"category": "creative"}, "column category: 'creative' is not accepted: write one of "
                               "data_use, creative_output, talent_performance"),
    ({"environment": "cloud"}, "column environment: 'cloud' is not accepted: write enterprise"),
    ({"stage": "draft"}, "column stage: 'draft' is not accepted: write temp"),
    ({"trains_on_inputs": "maybe"}, "column trains_on_inputs: 'maybe' is not yes or no"),
    ({"tool": ""}, "column tool: empty: name the generative AI tool"),
    ({"files": ""}, "column files: empty: name the delivered files"),
    ({"purpose": " "}, "column purpose: empty: say in a few words what the tool did"),
    ({"category": ""}, "column category: empty: write one of"),
    ({"id": "GENAI 001"}, "column id: 'GENAI 001': give each use a short reference"),
    ({"id": "x" * 65}, "column id:"),
    ({"purpose": "p" * 1001}, "column purpose: 1001 characters, at most 1000"),
    ({"consent_ref": "c" * 201}, "column consent_ref: 201 characters, at most 200"),
    ({"files": "f" * 4097}, "column files: 4097 characters, at most 4096"),
    ({"files": "/srv/delivery/vfx/*.exr"}, "column files: '/srv/delivery/vfx/*.exr': an "
                                           "absolute path: write the path from the top"),
    ({"files": "C:\\delivery\\vfx"}, "an absolute path"),
    ({"files": "../EP102/vfx/**"}, "'.' and '..' are not allowed"),
    ({"files": "!vfx/**"}, "exclusions ('!') are not supported"),
    ({"files": "vfx/***.exr"}, "'***' is not a wildcard"),
    ({"files": "{a,b}{c,d}{e,f}{g,h}{i,j}{k,l}"}, "expand to more than 32 patterns"),
    ({"files": "; ".join(f"sh{i:03d}" for i in range(33))}, "more than 32 patterns"),
    ({"files": " ; "}, "column files: no pattern"),
    ({"files": "{,}"}, "column files: '{,}': no file or folder named"),
]


@pytest.mark.parametrize(("over", "expected"), CSV_CASES,
                         ids=[f"{next(iter(o))}-{i}" for i, (o, _) in enumerate(CSV_CASES)])
def test_each_csv_problem_names_line_column_and_fix(tmp_path: Path, over: dict[str, str],
                                                    expected: str) -> None:
    path = write_csv(tmp_path, [row(id="GENAI-000"), row(**over)], pre="# note\n")
    message = problem(path)
    assert message.startswith(f"{NAME} line 4, "), message
    assert expected in message, message


def test_header_problems_name_the_header_line(tmp_path: Path) -> None:
    pre = "# a note\n# another\n"
    unknown = problem(write_csv(tmp_path, [row()], header=(*COLUMNS, "notes"), pre=pre))
    assert unknown.startswith(f"{NAME} line 3: unknown column(s) 'notes': the columns are id,")
    missing = problem(write_csv(tmp_path, [row()], header=COLUMNS[:-3], pre=pre))
    assert f"{NAME} line 3: missing column(s) stage" in missing
    twice = problem(write_csv(tmp_path, [row()], header=(*COLUMNS, "tool")))
    assert "line 1: column(s) tool appear twice" in twice
    # optional columns may be left out; names are read as people write them
    header = ("ID", "Files", "Tool", "Purpose", "Category", "Environment", "Trains on inputs",
              "Stage")
    rows = [{h: row()[register._column(h)] for h in header}]
    reg = load(write_csv(tmp_path, rows, header=header))
    assert reg.entries[0].version is None and reg.entries[0].approval_ref is None


def test_row_problems_the_csv_reader_finds(tmp_path: Path) -> None:
    path = tmp_path / NAME
    good = ",".join(GOOD[c] for c in COLUMNS)
    path.write_text(f"{','.join(COLUMNS)}\n{good}\n{good.replace('GENAI-001', 'G-2')},x,y\n")
    assert problem(path).startswith(f"{NAME} line 3: 13 values but the header has 11 columns: "
                                    "put a value that holds a comma in double quotes")
    path.write_text(f"{','.join(COLUMNS)}\n{good}\n{good}\n")
    assert problem(path) == (f"{NAME} line 3, column id: 'GENAI-001' is already the id of "
                             f"{NAME} line 2: give each use a short reference of letters, "
                             "digits, '.', '_' or '-', unique in the register, at most 64 "
                             "characters (GENAI-001)")
    path.write_text(f"{','.join(COLUMNS)}\n{good}\nG-2,\"vfx/sh020,Runway\n")
    assert "line 3: not valid CSV: a double quote opened on line 3 is never closed" \
        in problem(path)
    path.write_bytes(f"{','.join(COLUMNS)}\n{good}\n".encode()
                     + good.replace("sky", "s\xe9").encode("cp1252") + b"\n")
    assert problem(path).startswith(f"{NAME} line 3: not UTF-8 text (byte 0xe9): save the "
                                    "register as UTF-8 (in Excel: CSV UTF-8)")
    path.write_text("# only notes\n\n")
    assert "no header row" in problem(path)
    path.write_text("")
    assert "no header row" in problem(path)


def test_every_problem_is_listed_at_once_up_to_twenty(tmp_path: Path) -> None:
    rows = [row(id=f"G-{i}", stage="draft") for i in range(3)]
    message = problem(write_csv(tmp_path, [row(), *rows]))
    assert message.startswith(f"{NAME}: 3 problems in the GenAI register; fix them")
    for line in (3, 4, 5):
        assert f"  - {NAME} line {line}, column stage: 'draft'" in message
    many = [row(id=f"G-{i}", tool="", stage="draft") for i in range(15)]
    message = problem(write_csv(tmp_path, many))
    assert message.startswith(f"{NAME}: 30 problems") and message.endswith("... and 10 more")
    assert message.count("\n  - ") == 20


def test_json_problems_name_the_entry_and_key(tmp_path: Path) -> None:
    good = {**row(), "trains_on_inputs": False}
    path = write_json(tmp_path, [good, {**good, "id": "G-2", "trains_on_inputs": "yes"}])
    assert problem(path) == ("GENAI-DISCLOSURE.json entry 2 (id 'G-2'), key trains_on_inputs: "
                             "'yes' is not true or false: write yes if the tool may train on or "
                             "keep what it was given, no if it may not")
    path = write_json(tmp_path, [{**good, "notes": "x"}])
    assert "entry 1 (id 'GENAI-001'): unknown key(s) 'notes': the keys are id, files," \
        in problem(path)
    no_stage = {k: v for k, v in good.items() if k != "stage"}
    assert "entry 1 (id 'GENAI-001'), key stage: empty: write temp" \
        in problem(write_json(tmp_path, [no_stage]))
    assert "key files: 33 patterns, at most 32" in problem(
        write_json(tmp_path, [{**good, "files": [f"sh{i}" for i in range(33)]}]))
    assert "key files (pattern 2): empty" in problem(
        write_json(tmp_path, [{**good, "files": ["sh010", ""]}]))
    assert "entry 1: an entry is an object of id, files" in problem(write_json(tmp_path, ["x"]))
    assert "unknown key(s) 'show'" in problem(write_json(tmp_path, {"entries": [],
                                                                    "show": "X"}))
    assert "no \"entries\"" in problem(write_json(tmp_path, {"version": 1}))
    assert "an object with an \"entries\" array" in problem(write_json(tmp_path, "entries"))
    path.write_text('{"entries": [\n  {"id": "a",}\n]}')
    assert problem(path).startswith("GENAI-DISCLOSURE.json line 2 column 14: not valid JSON")
    path.write_text("[" * 200_000 + "]" * 200_000)
    assert "nested too deeply" in problem(path)


def test_what_is_not_a_register_is_refused(tmp_path: Path) -> None:
    assert ".csv or .json" in problem(tmp_path / "GENAI-DISCLOSURE.xlsx")
    assert "GenAI register not found" in problem(tmp_path / NAME)
    (tmp_path / "folder.csv").mkdir()
    assert "not a regular file" in problem(tmp_path / "folder.csv")


# -- bounds: the vendor writes it -------------------------------------------------------------

def test_a_50_mb_register_is_refused_from_its_size(tmp_path: Path) -> None:
    path = tmp_path / NAME
    line = (",".join(GOOD[c] for c in COLUMNS) + "\n").encode()
    with path.open("wb") as f:
        f.write((",".join(COLUMNS) + "\n").encode())
        f.write(line * (50_000_000 // len(line)))
    with watchdog(2):
        message = problem(path)
    assert "MB; a GenAI register is at most 8 MiB (10000 entries)" in message


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / NAME
    os.mkfifo(fifo)
    with watchdog(2):
        assert "not a regular file" in problem(fifo)


def test_100k_rows_are_refused_at_the_cap(tmp_path: Path) -> None:
    path = tmp_path / NAME
    lines = [",".join(COLUMNS)] + [f"G-{i},s{i},t,,p,other,enterprise,no,temp,,"
                                   for i in range(100_000)]
    path.write_text("# note\n" + "\n".join(lines) + "\n")
    assert path.stat().st_size < register.MAX_BYTES  # the row cap refuses it, not the size
    with watchdog(10):
        message = problem(path)
    assert message.startswith(f"{NAME} line {MAX_ENTRIES + 3}: more than {MAX_ENTRIES} entries")
    entries = [{"id": f"G-{i}"} for i in range(100_000)]
    with watchdog(10):
        assert "100000 entries, more than 10000" in problem(write_json(tmp_path, entries))


def test_a_register_at_the_cap_loads(tmp_path: Path) -> None:
    rows = [row(id=f"G-{i}", files=f"vfx/sh{i:05d}/**; sh{i:05d}_comp.####.exr")
            for i in range(MAX_ENTRIES)]
    path = write_csv(tmp_path, rows)
    with watchdog(60):
        reg = load(path)
        assert len(reg.entries) == MAX_ENTRIES
        # finding the entries of a file does not try every pattern of every entry
        for i in range(0, MAX_ENTRIES, 7):
            hits = reg.entries_for(tmp_path / f"vfx/sh{i:05d}/sh{i:05d}_comp.1001.exr")
            assert [e.id for e in hits] == [f"G-{i}"]


def test_a_huge_field_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [row(), row(id="G-2", purpose="p" * 200_000)])
    assert problem(path).startswith(f"{NAME} line 3: not valid CSV: a value longer than 131072 "
                                    "characters")


# -- finding it at a delivery root ------------------------------------------------------------

def test_find_at_the_delivery_root_in_any_case(tmp_path: Path) -> None:
    root = tmp_path / "EP101"
    root.mkdir()
    assert find(root) is None
    assert find(root / "missing") is None
    (root / "a.exr").write_bytes(b"x")
    assert find(root / "a.exr") is None  # not a folder
    (root / "sub").mkdir()
    write_csv(root / "sub", [row()])  # only the root counts
    assert find(root) is None
    path = write_csv(root, [row()], name="GenAI-Disclosure.CSV")
    assert find(root) == path
    reg = register.discover(root)
    assert reg is not None and reg.root == str(root)
    # a symlinked delivery root is read through its link
    link_root = tmp_path / "outgoing"
    link_root.symlink_to(root)
    assert find(link_root) == link_root / path.name


def test_two_registers_are_refused(tmp_path: Path) -> None:
    write_csv(tmp_path, [row()])
    write_json(tmp_path, [], name="genai-disclosure.json")
    with pytest.raises(ConfigError, match="2 GenAI registers .GENAI-DISCLOSURE.csv, "
                                          "genai-disclosure.json.: deliver one"):
        find(tmp_path)


def test_a_link_out_of_the_delivery_is_never_followed(tmp_path: Path) -> None:
    root = tmp_path / "EP101"
    root.mkdir()
    outside = write_csv(tmp_path, [row()], name="elsewhere.csv")
    (root / NAME).symlink_to(outside)
    with pytest.raises(ConfigError, match="is a link out of the delivery"):
        find(root)
    (root / NAME).unlink()
    (root / NAME).symlink_to("../EP101/../elsewhere.csv")
    with pytest.raises(ConfigError, match="is a link out of the delivery"):
        find(root)
    # a link to a file inside the delivery is read where it really is
    (root / NAME).unlink()
    (root / "docs").mkdir()
    inside = write_csv(root / "docs", [row()], name="register-v2.csv")
    (root / NAME).symlink_to("docs/register-v2.csv")
    assert find(root) == inside
    reg = register.discover(root)
    assert reg is not None and reg.root == str(root)  # patterns stay relative to the root
    (root / NAME).unlink()
    (root / NAME).mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        find(root)


# -- which files an entry covers --------------------------------------------------------------

@pytest.fixture
def covering(tmp_path: Path) -> Register:
    specs = {
        "FILE": "vfx/sh010/sh010_comp_v003.exr",
        "FOLDER": "vfx/sh020",
        "WILD": "vfx/*/sh03?_comp_v[0-9]*.exr",
        "DEEP": "**/matte/*.tif",
        "NAME": "plate.exr",
        "BRACE": "audio/{adr,vo}/*.wav",
        "SEQ": "sh040_comp.####.exr",
        "PRINTF": "vfx/sh050/sh050_comp.%04d.exr",
        "ANYPAD": "renders/frame.%d.png",
        "HASH": "notes/take#.mov",
        "SHOT": "sh060",
        "SHOT2": "EP101_SH070",
        "TWO": "sh080; sh090",
        "CAFE": "café",
        "WIN": "vfx\\sh100",
        "TOP": "sh110/",
    }
    rows = [row(id=k, files=v) for k, v in specs.items()]
    return load(write_csv(tmp_path, rows), root=tmp_path / "delivery")


COVERS = [
    ("vfx/sh010/sh010_comp_v003.exr", ["FILE"]),
    ("vfx/sh010/sh010_comp_v004.exr", []),
    ("VFX/sh010/sh010_comp_v003.exr", []),  # case-sensitive, as approvals
    ("vfx/sh020/a/b.exr", ["FOLDER"]),  # a folder covers what is in it
    ("vfx/sh0200/x.exr", []),
    ("vfx/anything/sh031_comp_v12.exr", ["WILD"]),
    ("vfx/a/b/sh031_comp_v12.exr", []),  # * is one folder
    ("vfx/anything/sh031_comp_vX.exr", []),
    ("x/y/matte/m.tif", ["DEEP"]),
    ("matte/m.tif", ["DEEP"]),  # ** is also no folder
    ("deep/a/b/plate.exr", ["NAME"]),  # a name without a folder matches at any depth
    ("plate.exr", ["NAME"]),
    ("plate.exr.bak", []),
    ("audio/adr/l1.wav", ["BRACE"]),
    ("audio/vo/l1.wav", ["BRACE"]),
    ("audio/sfx/l1.wav", []),
    ("out/sh040_comp.1001.exr", ["SEQ"]),
    ("sh040_comp.10001.exr", ["SEQ"]),  # past the padding
    ("sh040_comp.101.exr", []),  # short of it
    ("sh040_comp.0101.exr", ["SEQ"]),
    ("sh040_comp.01001.exr", []),  # padded to five: another sequence
    ("sh040_comp.####.exr", ["SEQ"]),  # the pattern's own name
    ("vfx/sh050/sh050_comp.0042.exr", ["PRINTF"]),
    ("vfx/sh050/sh050_comp.abcd.exr", []),
    ("renders/frame.7.png", ["ANYPAD"]),
    ("renders/frame.1001.png", ["ANYPAD"]),
    ("renders/frame.07.png", []),
    ("renders/frame.png", []),
    ("notes/take#.mov", ["HASH"]),  # a real '#' in a name
    ("notes/take12.mov", ["HASH"]),
    ("shots/sh060/comp/x.exr", ["SHOT"]),  # a shot: a folder of that name
    ("final/EP101_sh060_comp.1001.exr", ["SHOT"]),  # or a word of a file's name
    ("final/sh060", ["SHOT"]),
    ("final/EP101_sh0600_comp.exr", []),
    ("final/xsh060.exr", []),
    ("final/SH060_comp.exr", []),
    ("final/EP101_SH070_v1.mov", ["SHOT2"]),
    ("final/EP101-SH070_v1.mov", []),
    ("sh090/a.exr", ["TWO"]),
    ("a/sh080.exr", ["TWO"]),
    ("vfx/sh100/a.exr", ["WIN"]),
    ("sh110/a.exr", ["TOP"]),  # a '/' anchors it at the top, and makes it a folder
    ("vfx/sh110/a.exr", []),
    ("vfx/EP_sh110.exr", []),
    ("sh060/vfx/sh020/x.exr", ["SHOT"]),  # a path with a '/' starts at the top
    ("vfx/sh020/sh060/x.exr", ["FOLDER", "SHOT"]),  # register order
]


@pytest.mark.parametrize(("rel", "ids"), COVERS, ids=[c[0] for c in COVERS])
def test_entries_for(covering: Register, rel: str, ids: list[str]) -> None:
    root = Path(covering.root or "")
    assert [e.id for e in covering.entries_for(root / rel)] == ids
    assert [e.id for e in covering.entries_for(root / rel, root)] == ids


def test_sequence_patterns_cover_the_frames_sequences_groups(tmp_path: Path) -> None:
    """A register written from provgate's own sequence names (``plate.####.exr``,
    ``plate.%04d.exr``) covers exactly the frames grouped under them."""
    from provgate.sequences import Sequence, group
    frames = ["0001", "0999", "1001", "00005", "00006"]
    units = group([f"vfx/sh010/plate.{f}.exr" for f in frames])
    seqs = [u for u in units if isinstance(u, Sequence)]
    assert [s.padding for s in seqs] == [4, 5]
    rows = [row(id=f"P{s.padding}", files=s.path_pattern) for s in seqs]
    rows += [row(id=f"F{s.padding}", files=s.directory + s.printf) for s in seqs]
    reg = load(write_csv(tmp_path, rows), root="/d")
    for s in seqs:
        for frame in s.frames:
            path = f"/d/{s.directory}{s.prefix}{frame:0{s.padding}d}{s.suffix}"
            assert [e.id for e in reg.entries_for(path)] == [f"P{s.padding}", f"F{s.padding}"]


def test_entries_for_outside_the_root_and_the_root_itself(covering: Register,
                                                          tmp_path: Path) -> None:
    assert covering.entries_for(tmp_path / "elsewhere/vfx/sh020/a.exr") == []
    assert covering.entries_for(tmp_path / "delivery") == []
    assert covering.entries_for(tmp_path / "delivery/../vfx/sh020/a.exr") == []
    # another root: the same patterns below it
    other = tmp_path / "EP102"
    assert [e.id for e in covering.entries_for(other / "vfx/sh020/a.exr", other)] == ["FOLDER"]


def test_entries_for_relative_paths_and_decomposed_names(
        covering: Register, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert [e.id for e in covering.entries_for("delivery/vfx/sh020/x", "delivery")] == ["FOLDER"]
    nfd = unicodedata.normalize("NFD", "shots/café/a.exr")  # as a Mac names it
    assert nfd != unicodedata.normalize("NFC", nfd)
    assert [e.id for e in covering.entries_for(tmp_path / "delivery" / nfd)] == ["CAFE"]


def test_unused_entries_and_lookups(covering: Register) -> None:
    root = Path(covering.root or "")
    unused = covering.unused([root / "vfx/sh020/a.exr", root / "plate.exr"])
    assert "FOLDER" not in [e.id for e in unused] and "NAME" not in [e.id for e in unused]
    assert len(unused) == len(covering.entries) - 2
    with pytest.raises(ConfigError, match="no entry 'NOPE'"):
        covering.entry("NOPE")


GLOBS = ["a/*/c.exr", "**/b/**/*.exr", "a/**/c/**/d/*", "*.exr", ".hidden/*", "a/[bc]/x?",
         "a/[!b]/x", "**/x/**/y", "a/**", "**/*_v[0-9][0-9].exr", "*/b", "a*/b*/c*",
         "a/**/b/**/b/**/c", "**/.git/**", "a/b"]
PATHS = ["a/b/c.exr", "b.exr/x", "a/c/c.exr", "a/b/c/c.exr", "b/x.exr", "q/b/r/s.exr", "a/c/d/e",
         "a/z/c/y/d/f", "x.exr", "deep/x.exr", ".hidden/f", ".hidden/.f", "a/b/xy", "a/c/x1",
         "a/c/x", "a/d/x", "p/x/q/y", "x/y", "a", "a/q/r", "s_v01.exr", "t/s_v1.exr", "z/b",
         "ab/bc/cd", "ab/bc/cd/e", "a/b/b/c", "a/b/c", "r/.git/config", "a/b", "a/b/c/d"]


@pytest.mark.parametrize("pattern", GLOBS)
def test_globs_mean_what_they_mean_in_approvals(tmp_path: Path, pattern: str) -> None:
    """A pattern covers what assets.matches (case-sensitive, as approvals) matches, and
    everything below a folder it matches; one without '/' at any depth."""
    reg = load(write_csv(tmp_path, [row(files=pattern)]), root="/d")
    anchored = pattern if "/" in pattern else f"**/{pattern}"
    for rel in PATHS:
        expected = matches(rel, [anchored, f"{anchored}/**"], case_sensitive=True)
        assert bool(reg.entries_for(f"/d/{rel}")) == expected, (pattern, rel)


def test_many_globstars_over_a_deep_path_stay_linear(tmp_path: Path) -> None:
    """One regular expression with three ** over a path a thousand folders deep takes 28 s;
    component matching takes milliseconds, for any number of **."""
    pattern = "/".join(["**", "a"] * 12) + "/b"
    reg = load(write_csv(tmp_path, [row(files=pattern), row(id="G-2", files="**/a/**/a/c")]),
               root="/d")
    deep = "/d/" + "/".join(["a"] * 1000)
    with watchdog(5):
        assert reg.entries_for(deep + "/x") == []
        assert [e.id for e in reg.entries_for(deep + "/b")] == ["GENAI-001"]
        assert [e.id for e in reg.entries_for(deep + "/c")] == ["G-2"]


def test_odd_patterns_load_and_never_raise_when_matched(tmp_path: Path) -> None:
    odd = ["a/[", "a/[]", "a/[!]", "a/]x", "a/%", "a/#", "a/%5", "a/\U0001f4a5*", "a/[z-a]",
           "a/pgseq0x#", "a/{", "a/}", "a/{x}"]
    rows = [row(id=f"G-{i}", files=p) for i, p in enumerate(odd)]
    reg = load(write_csv(tmp_path, rows), root="/d")
    for name in ("[", "]x", "%", "#", "x", "pgseq0x1", "\U0001f4a5!", "{", "}", "{x}"):
        reg.entries_for(f"/d/a/{name}")
    assert {e.id for e in reg.entries_for("/d/a/pgseq0x7")} == {"G-9"}


# -- reconciliation ---------------------------------------------------------------------------

def test_disclosed_keeps_the_stronger_kind() -> None:
    sky = entry(purpose="sky replacement")
    r = reconcile("ai_generated", ["ai_generated"], [sky])
    assert isinstance(r, Reconciled)
    assert (r.status, r.kind, r.detected, r.declared) == ("disclosed", "ai_generated",
                                                          "ai_generated", "ai_composite")
    assert r.entries == (sky,) and r.findings == ()
    assert "declared in the GenAI register: GENAI-001 (Runway Gen-3: sky replacement)" in r.reason
    plate = entry(purpose="generated background plate")
    r = reconcile("ai_possible", ["ai_possible"], [plate])
    assert (r.status, r.kind) == ("disclosed", "ai_generated")
    assert "the declaration makes it ai_generated" in r.reason


def test_undisclosed_ai_is_a_finding() -> None:
    r = reconcile("ai_composite", ["ai_composite", "human"], [])
    assert (r.status, r.kind, r.detected, r.declared) == ("undisclosed", "ai_composite",
                                                          "ai_composite", None)
    assert [f.rule for f in r.findings] == ["undisclosed"]
    rule, reason = r.findings[0]  # (rule id, reason) pairs
    assert rule == "undisclosed" and "no register entry declares it" in reason
    # data use declares what was given to a tool, not how the file was made
    given = entry(category="data_use", purpose="plates given as references",
                  trains_on_inputs=True)
    r = reconcile("ai_generated", ["ai_generated"], [given])
    assert r.status == "undisclosed" and r.entries == (given,)
    assert [f.rule for f in r.findings] == ["undisclosed", "principles.trains_on_inputs"]
    assert "only with data use" in r.reason


def test_ai_only_in_the_evidence() -> None:
    # unknown or unreadable with an AI signal in the evidence is detected AI
    assert reconcile("unknown", ["ai_possible"], []).status == "undisclosed"
    assert reconcile("unreadable", ["ai_generated"], []).detected == "ai_generated"
    # a signed human declaration that outranked a detector stays what the verdict said
    r = reconcile("human", ["human", "ai_generated"], [])
    assert (r.status, r.kind, r.findings) == ("none", "human", ())
    r = reconcile("unknown", [], [])
    assert (r.status, r.kind, r.detected, r.declared, r.findings) == (
        "none", "unknown", None, None, ())


DECLARED = [
    ("sky replacement", "creative_output", "ai_composite"),
    ("generated background plate", "creative_output", "ai_generated"),
    ("generated sky replacement", "creative_output", "ai_composite"),  # a change wins
    ("text-to-image matte painting", "creative_output", "ai_composite"),  # a matte is a part
    ("text-to-image concept frame", "creative_output", "ai_generated"),
    ("voice clone for ADR", "talent_performance", "ai_generated"),
    ("de-aging of the lead", "talent_performance", "ai_composite"),
    ("crowd faces", "ethics_representation", "ai_composite"),  # no telling words: a part
    ("look development", "other", "ai_possible"),
    ("previz frames", "other", "ai_generated"),
    ("script breakdown", "data_use", None),
]


@pytest.mark.parametrize(("purpose", "category", "kind"), DECLARED)
@pytest.mark.parametrize("detected", ["unknown", "human", "algorithmic", "unreadable"])
def test_declared_only_gets_the_declared_kind(purpose: str, category: str, kind: str | None,
                                              detected: str) -> None:
    for stage in STAGES:  # the stage does not change what the file is
        e = entry(purpose=purpose, category=category, stage=stage, consent_ref="RIDER-7",
                  approval_ref="STUDIO-1" if stage == "final" else None)
        assert declared_kind(e)[0] == kind == e.declared_kind
        r = reconcile(detected, [], [e])
        assert r.status == "declared_only" and r.detected is None and r.declared == kind
        assert r.kind == (kind or detected)
        assert r.findings == ()
        if kind:
            assert "though the file's metadata shows no AI" in r.reason
        else:
            assert "data use only" in r.reason


def test_several_entries_the_strongest_declared_kind_and_every_finding() -> None:
    a = entry(id="A", purpose="sky replacement", trains_on_inputs=True)
    b = entry(id="B", purpose="generated plate", environment="consumer")
    r = reconcile("unknown", [], [a, b])
    assert (r.status, r.kind, r.declared) == ("declared_only", "ai_generated", "ai_generated")
    assert [(f.rule, f.reason.split(":")[0]) for f in r.findings] == [
        ("principles.trains_on_inputs", "A (Runway Gen-3"),
        ("principles.consumer_environment", "B (Runway Gen-3")]


PRINCIPLES = [
    ({"trains_on_inputs": True}, "principles.trains_on_inputs", "may train on or keep"),
    ({"environment": "consumer"}, "principles.consumer_environment", "consumer environment"),
    ({"category": "talent_performance", "purpose": "digital replica"},
     "principles.talent_without_consent", "no consent reference"),
    ({"stage": "final"}, "principles.final_without_approval", "no studio approval reference"),
]


@pytest.mark.parametrize(("over", "rule", "words"), PRINCIPLES, ids=[p[1] for p in PRINCIPLES])
def test_each_principle(over: dict[str, Any], rule: str, words: str) -> None:
    e = entry(**over)
    for kind in ("unknown", "ai_generated"):  # declared only, or disclosed
        r = reconcile(kind, [], [e])
        assert r.findings == (Finding(rule, r.findings[0].reason),)
        assert words in r.findings[0].reason and r.findings[0].reason.startswith("GENAI-001 (")


def test_principles_that_are_met() -> None:
    talent = entry(category="talent_performance", consent_ref="RIDER-7")
    assert reconcile("unknown", [], [talent]).findings == ()
    final = entry(stage="final", approval_ref="STUDIO-1")
    assert reconcile("unknown", [], [final]).findings == ()
    # with the ledger's active approvals, the reference must be one of them
    assert reconcile("unknown", [], [final], approvals={"STUDIO-1"}).findings == ()
    missing = reconcile("unknown", [], [final], approvals={"STUDIO-2"}).findings
    assert [f.rule for f in missing] == ["principles.final_without_approval"]
    assert "STUDIO-1 is not an active approval in the ledger" in missing[0].reason


def test_reconciled_values_are_records_and_evidence() -> None:
    e = entry(stage="final")
    r = reconcile("unknown", [], [e, entry(id="D", category="data_use")])
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.kind = "human"  # type: ignore[misc]
    doc = json.loads(json.dumps(r.to_dict()))
    assert doc["status"] == "declared_only" and doc["entries"] == ["GENAI-001", "D"]
    assert doc["findings"] == [{"rule": "principles.final_without_approval",
                                "reason": r.findings[0].reason}]
    signals = r.signals()  # data use declares no kind: it is not a signal
    assert len(signals) == 1 and signals[0].kind == "ai_composite"
    assert signals[0].source == "register" and signals[0].tag == f"{NAME} line 2"
    assert json.loads(signals[0].value)["id"] == "GENAI-001"
    signal_schema = data.schema("decision")["$defs"]["signal"]
    jsonschema.Draft202012Validator(signal_schema).validate(signals[0].to_dict())


# -- the policy's [register] table ------------------------------------------------------------

def test_actions_come_from_the_policy() -> None:
    bare: dict[str, Any] = {"version": 1}
    assert action_for(bare, "working", "undisclosed") == ("flag", "register.undisclosed")
    assert action_for(bare, "final", "undisclosed", final=True) == ("escalate",
                                                                     "register.undisclosed")
    for rule in register.RULES[1:]:
        assert action_for(bare, "temp", rule) == ("escalate", f"register.{rule}")
    proposed = tomllib.loads(PROPOSED_POLICY)
    assert action_for(proposed, "final", "undisclosed", final=True) == (
        "escalate", "zones.final.register.undisclosed")
    assert action_for(proposed, "working", "undisclosed") == ("flag", "register.undisclosed")
    assert action_for(proposed, "temp", "principles.trains_on_inputs") == (
        "escalate", "register.principles.trains_on_inputs")
    stricter = tomllib.loads(PROPOSED_POLICY + '[zones.final.register.principles]\n'
                                               'consumer_environment = "block"\n')
    assert action_for(stricter, "final", "principles.consumer_environment") == (
        "block", "zones.final.register.principles.consumer_environment")
    with pytest.raises(ValueError, match="unknown register rule"):
        action_for(proposed, "final", "principles.nope")


def test_finding_actions_strongest_first() -> None:
    policy = tomllib.loads(PROPOSED_POLICY.replace('consumer_environment = "escalate"',
                                                   'consumer_environment = "block"'))
    e = entry(environment="consumer", trains_on_inputs=True)
    r = reconcile("ai_generated", [], [entry(id="D", category="data_use", environment="consumer",
                                             trains_on_inputs=True)])
    assert [f.rule for f in r.findings][0] == "undisclosed"
    ranked = finding_actions(r, policy, "working")
    assert [(a, rule) for _, a, rule in ranked] == [
        ("block", "register.principles.consumer_environment"),
        ("escalate", "register.principles.trains_on_inputs"),
        ("flag", "register.undisclosed")]
    assert finding_actions(reconcile("unknown", [], [e]), policy, "final", final=True)[0][1] \
        == "block"
