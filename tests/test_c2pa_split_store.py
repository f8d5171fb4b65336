"""A JPEG's manifest store re-cut over APP11 segments (ISO 19566-5) must never be "absent"
while c2pa-python reads it: neither the byte look (credentials.BYTES_SETTLE_C2PA) nor
ExifTool's silence may spare a file whose store c2pa-rs finds."""

from __future__ import annotations

import io
import json
import re
import struct
from pathlib import Path

from conftest import ROOT, run_json

SIGNED = ROOT / "sample_media" / "c2pa" / "c2pa_ai_created.jpg"
LABELS = (b"c2pa", b"C2PA")


def _segments(jpeg: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """(marker, contents) of every segment before SOS, and SOS's offset."""
    out, i = [], 2
    while jpeg[i + 1] != 0xDA:
        length = struct.unpack(">H", jpeg[i + 2:i + 4])[0]
        out.append((jpeg[i + 1], jpeg[i + 4:i + 2 + length]))
        i += 2 + length
    return out, i


def resegment(jpeg: bytes, keep_uuid: bool = True, ci: bytes = b"JP") -> bytes:
    """The JPEG with its JUMBF store re-cut into APP11 segments so that every C2PA label in the
    store straddles a segment boundary (with ``keep_uuid``, all but the store's jumd type UUID at
    offset 24 of the first segment). Each continuation repeats the superbox LBox/TBox."""
    segs, sos = _segments(jpeg)
    out = bytearray(jpeg[:2])
    for marker, body in segs:
        if marker != 0xEB or body[:2] != b"JP":
            out += bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body
            continue
        en, head, payload = body[2:4], body[8:16], body[16:]
        cuts = sorted({m.start() + 2 for lab in LABELS for m in re.finditer(lab, payload)
                       if not (keep_uuid and m.start() == 8)})
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for z, piece in enumerate(pieces, 1):
            seg = ci + en + struct.pack(">I", z) + head + piece
            out += b"\xff\xeb" + struct.pack(">H", len(seg) + 2) + seg
    return bytes(out + jpeg[sos:])


def c2pa_reads(path: Path) -> bool:
    import c2pa

    try:
        with c2pa.Reader("image/jpeg", io.BytesIO(path.read_bytes())) as reader:
            return bool(json.loads(reader.json()).get("manifests"))
    except Exception as exc:  # noqa: BLE001 - ManifestNotFound and its kin
        assert "ManifestNotFound" in str(exc) or "JUMBF" in str(exc), exc
        return False


def scan_state(path: Path) -> str:
    return run_json("scan", path)[0]["c2pa"]


def test_labels_cut_over_app11_segments_are_still_validated(tmp_path: Path) -> None:
    f = tmp_path / "split.jpg"
    f.write_bytes(resegment(SIGNED.read_bytes()))
    assert f.read_bytes().count(b"c2pa") == 1  # only the store's type UUID is left whole
    assert c2pa_reads(f)
    assert scan_state(f) == "invalid"  # re-cutting moves the data hash's exclusion


def test_a_store_with_no_whole_label_is_absent_only_if_c2pa_python_misses_it(
        tmp_path: Path) -> None:
    """c2pa-rs 0.91 finds a JPEG store by "c2pa" at bytes 24..28 of its first APP11 segment,
    so cutting that too hides the store from it; should a later c2pa-rs reassemble first, the
    byte look must not spare the file."""
    f = tmp_path / "split_all.jpg"
    f.write_bytes(resegment(SIGNED.read_bytes(), keep_uuid=False))
    assert not any(lab in f.read_bytes() for lab in LABELS)
    if c2pa_reads(f):
        assert scan_state(f) != "absent"


def test_a_store_under_another_ci_is_not_absent(tmp_path: Path) -> None:
    """ExifTool reassembles only APP11 segments whose CI is "JP"; c2pa-rs does not look at
    the CI. A store under another CI is read by c2pa-python (valid, when only the CI of the
    original segment is changed: APP11 is outside the hash) while ExifTool sees nothing and
    warns of nothing."""
    f = tmp_path / "ci.jpg"
    f.write_bytes(resegment(SIGNED.read_bytes(), ci=b"XX"))
    assert c2pa_reads(f)
    assert scan_state(f) != "absent"
