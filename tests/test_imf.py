"""IMF and DCP packages read from folders built here: the XML written by hand after the
schemas named in FILM-FORMATS.md (ST 429-9 asset map, ST 2067-2 PKL, ST 2067-3 CPL,
ST 429-7 DCP CPL), MXF track files made by ffmpeg when it is installed (else bytes: the PKL
check works on any bytes)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from provgate import imf

FFMPEG = shutil.which("ffmpeg")
XSI = "http://www.w3.org/2001/XMLSchema-instance"


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def b64sha1(path: Path) -> str:
    return base64.b64encode(hashlib.sha1(path.read_bytes()).digest()).decode()


_MADE: dict[tuple[str, float], bytes] = {}


def make_mxf(path: Path, kind: str, seconds: float) -> None:
    """A track file; ffmpeg runs once per kind and length, later packages get a copy."""
    if (kind, seconds) in _MADE:
        path.write_bytes(_MADE[kind, seconds])
        return
    if FFMPEG:
        src = (["-f", "lavfi", "-i", f"testsrc=size=64x36:rate=24:duration={seconds}",
                "-c:v", "mpeg2video", "-f", "mxf"] if kind == "video" else
               ["-f", "lavfi", "-i", f"sine=frequency=1000:sample_rate=48000:duration={seconds}",
                "-c:a", "pcm_s24le", "-ac", "1", "-f", "mxf_opatom"])
        subprocess.run([FFMPEG, "-v", "error", "-y", *src, str(path)], check=True, timeout=60)
    else:  # any bytes: the package checks hashes, not essence
        path.write_bytes(os.urandom(4096) + path.name.encode())
    _MADE[kind, seconds] = path.read_bytes()


def asset_map(entries: list[tuple[str, str, bool]]) -> str:
    assets = "".join(
        f"<Asset><Id>{aid}</Id>{'<PackingList>true</PackingList>' if pkl else ''}"
        f"<ChunkList><Chunk><Path>{p}</Path><VolumeIndex>1</VolumeIndex></Chunk></ChunkList>"
        f"</Asset>" for aid, p, pkl in entries)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<AssetMap xmlns="http://www.smpte-ra.org/schemas/429-9/2007/AM">'
            f"<Id>{urn()}</Id><Creator>provgate tests</Creator><VolumeCount>1</VolumeCount>"
            "<IssueDate>2025-01-01T00:00:00Z</IssueDate><Issuer>provgate</Issuer>"
            f"<AssetList>{assets}</AssetList></AssetMap>")


def packing_list(entries: list[tuple[str, Path, str]], ns: str) -> str:
    assets = "".join(
        f"<Asset><Id>{aid}</Id><Hash>{b64sha1(p)}</Hash><Size>{p.stat().st_size}</Size>"
        f"<Type>{t}</Type><OriginalFileName>{p.name}</OriginalFileName></Asset>"
        for aid, p, t in entries)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<PackingList xmlns="{ns}">'
            f"<Id>{urn()}</Id><IssueDate>2025-01-01T00:00:00Z</IssueDate>"
            f"<Issuer>provgate</Issuer><Creator>provgate tests</Creator>"
            f"<AssetList>{assets}</AssetList></PackingList>")


def resource(track_file: str, duration: int, entry: int = 0, repeat: int = 1,
             rate: str | None = None) -> str:
    return (f'<Resource xsi:type="TrackFileResourceType"><Id>{urn()}</Id>'
            + (f"<EditRate>{rate}</EditRate>" if rate else "")
            + f"<IntrinsicDuration>{entry + duration}</IntrinsicDuration>"
            f"<EntryPoint>{entry}</EntryPoint><SourceDuration>{duration}</SourceDuration>"
            f"<RepeatCount>{repeat}</RepeatCount><SourceEncoding>{urn()}</SourceEncoding>"
            f"<TrackFileId>{track_file}</TrackFileId></Resource>")


def sequence(name: str, resources: list[str], track: str) -> str:
    return (f"<cc:{name}><Id>{urn()}</Id><TrackId>{track}</TrackId>"
            f"<ResourceList>{''.join(resources)}</ResourceList></cc:{name}>")


class Imp:
    """A minimal IMF package (one CPL, two segments, two picture and one sound track file)."""

    def __init__(self, folder: Path, title: str = "PROVGATE_TEST_FTR") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.video_a, self.video_b, self.audio = (folder / "video_a.mxf",
                                                  folder / "video_b.mxf", folder / "audio.mxf")
        make_mxf(self.video_a, "video", 1)
        make_mxf(self.video_b, "video", 1)
        make_mxf(self.audio, "audio", 2.5)
        self.ids = {p: urn() for p in (self.video_a, self.video_b, self.audio)}
        self.cpl_id, self.pkl_id = urn(), urn()
        self.cpl = folder / f"CPL_{self.cpl_id[9:]}.xml"
        self.pkl = folder / f"PKL_{self.pkl_id[9:]}.xml"
        image, sound = urn(), urn()
        a, b, s = self.ids[self.video_a], self.ids[self.video_b], self.ids[self.audio]
        segments = [
            # segment 1: A (24 frames), then B (12 frames); sound 1.5 s at 48 kHz
            sequence("MainImageSequence", [resource(a, 24), resource(b, 12)], image)
            + sequence("MainAudioSequence", [resource(s, 72000, rate="48000 1")], sound),
            # segment 2: A from frame 12, 12 frames twice
            sequence("MainImageSequence", [resource(a, 12, entry=12, repeat=2)], image)
            + sequence("MainAudioSequence", [resource(s, 48000, entry=72000, rate="48000 1")],
                       sound),
        ]
        self.cpl.write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<CompositionPlaylist xmlns="http://www.smpte-ra.org/schemas/2067-3/2016" '
            f'xmlns:cc="http://www.smpte-ra.org/schemas/2067-2/2016" xmlns:xsi="{XSI}">'
            f"<Id>{self.cpl_id}</Id><IssueDate>2025-01-01T00:00:00Z</IssueDate>"
            f"<Creator>provgate tests</Creator><ContentTitle>{title}</ContentTitle>"
            "<CompositionTimecode><TimecodeDropFrame>false</TimecodeDropFrame>"
            "<TimecodeRate>24</TimecodeRate><TimecodeStartAddress>01:00:00:00"
            "</TimecodeStartAddress></CompositionTimecode>"
            "<EditRate>24 1</EditRate><SegmentList>"
            + "".join(f"<Segment><Id>{urn()}</Id><SequenceList>{s}</SequenceList></Segment>"
                      for s in segments)
            + "</SegmentList></CompositionPlaylist>")
        self.write_pkl()
        self.write_assetmap()
        (folder / "VOLINDEX.xml").write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n<VolumeIndex xmlns='
            '"http://www.smpte-ra.org/schemas/429-9/2007/AM"><Index>1</Index></VolumeIndex>')
        (folder / "checksums.md5").write_text("".join(
            f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.name}\n" for p in self.ids))

    def write_pkl(self) -> None:
        self.pkl.write_text(packing_list(
            [(self.cpl_id, self.cpl, "text/xml")]
            + [(aid, p, "application/mxf") for p, aid in self.ids.items()],
            "http://www.smpte-ra.org/schemas/2067-2/2016/PKL"))

    def write_assetmap(self, extra: list[tuple[str, str, bool]] = ()) -> None:
        (self.folder / "ASSETMAP.xml").write_text(asset_map(
            [(self.pkl_id, self.pkl.name, True), (self.cpl_id, self.cpl.name, False)]
            + [(aid, p.name, False) for p, aid in self.ids.items()] + list(extra)))

    def id(self, path: Path) -> str:
        return imf.normalise_id(self.ids[path])


@pytest.fixture
def imp(tmp_path: Path) -> Imp:
    return Imp(tmp_path / "delivery" / "IMP_FTR")


class CountingHasher:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, path: str, algorithms: tuple[str, ...]) -> dict[str, bytes]:
        self.calls[path] += 1
        return imf.hash_file(path, algorithms)


def test_reads_the_composition_and_places_every_track_file(imp: Imp) -> None:
    pkg = imf.read(str(imp.folder))
    assert pkg.problems == ()
    assert pkg.kind == "imf"
    (comp,) = pkg.compositions
    assert comp.title == "PROVGATE_TEST_FTR"
    assert comp.edit_rate == Fraction(24)
    assert comp.standard == "imf"
    assert comp.segments == 2
    assert comp.duration == 36 + 24
    assert comp.timecode_start == "01:00:00:00"
    a, b, s = imp.id(imp.video_a), imp.id(imp.video_b), imp.id(imp.audio)
    assert comp.track_file_ids() == [a, b, s]
    assert [(r.segment, r.record_timecode, r.entry_point, r.duration, r.repeat_count)
            for r in comp.uses(a)] == [(1, "01:00:00:00", 0, 24, 1), (2, "01:00:01:12", 12, 12, 2)]
    (rb,) = comp.uses(b)
    assert (rb.segment, rb.record_in, rb.record_timecode, rb.sequence) == \
        (1, 24, "01:00:01:00", "MainImageSequence")
    sounds = comp.uses(s)
    assert [(r.record_timecode, r.edit_rate) for r in sounds] == \
        [("01:00:00:00", Fraction(48000)), ("01:00:01:12", Fraction(48000))]
    # a held track file is reported with its composition, segment and record timecode
    text = pkg.placements(b)[0].describe()
    assert "'PROVGATE_TEST_FTR' segment 1" in text and "record 01:00:01:00" in text
    # the asset map and the PKL
    assert pkg.path_of(imp.ids[imp.video_b]) == str(imp.video_b)
    assert pkg.pkl[b].hash == b64sha1(imp.video_b)
    assert pkg.pkl[b].size == imp.video_b.stat().st_size
    assert pkg.pkl[b].type == "application/mxf" and pkg.pkl[b].algorithm == "sha1"


def test_paperwork_is_told_from_media(imp: Imp) -> None:
    (imp.folder / "notes.mov").write_bytes(b"\0" * 64)  # not in the asset map: media to judge
    pkg = imf.read(str(imp.folder))
    roles = {os.path.basename(p): r for p, r in pkg.roles.items()}
    assert roles == {
        "ASSETMAP.xml": "paperwork", "VOLINDEX.xml": "paperwork", "checksums.md5": "paperwork",
        imp.pkl.name: "paperwork", imp.cpl.name: "paperwork",
        "video_a.mxf": "track_file", "video_b.mxf": "track_file", "audio.mxf": "track_file",
        "notes.mov": "unlisted",
    }
    assert sorted(map(os.path.basename, pkg.media())) == \
        ["audio.mxf", "notes.mov", "video_a.mxf", "video_b.mxf"]


def test_an_intact_package_verifies_reading_each_file_once(imp: Imp) -> None:
    pkg = imf.read(str(imp.folder))
    hasher = CountingHasher()
    assert imf.verify(pkg, hasher=hasher) == []
    # each track file read once; the CPL is checked against the bytes that were parsed
    assert hasher.calls == Counter({str(p): 1 for p in imp.ids})
    # the session's own digests (one read for fingerprint and PKL hash): no read here at all
    need = imf.needed(pkg)
    assert need == {str(p): "sha1" for p in imp.ids}
    session = {p: imf.hash_file(p, ("sha256", alg)) for p, alg in need.items()}
    assert session[str(imp.video_a)]["sha256"] == hashlib.sha256(
        imp.video_a.read_bytes()).digest()
    hasher = CountingHasher()
    assert imf.verify(pkg, digests=session, hasher=hasher) == []
    assert not hasher.calls


def test_a_tampered_track_file_is_an_integrity_problem(imp: Imp) -> None:
    data = bytearray(imp.video_b.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    imp.video_b.write_bytes(bytes(data))
    (problem,) = imf.verify(imf.read(str(imp.folder)))
    assert problem.kind == "altered"
    assert problem.path == str(imp.video_b)
    assert problem.asset_id == imp.id(imp.video_b)
    assert "does not match its packing list" in problem.message


def test_a_truncated_or_missing_track_file_is_an_integrity_problem(imp: Imp) -> None:
    with open(imp.video_a, "r+b") as fh:
        fh.truncate(100)
    imp.audio.unlink()
    hasher = CountingHasher()
    problems = imf.verify(imf.read(str(imp.folder)), hasher=hasher)
    assert {(p.kind, p.path) for p in problems} == {("altered", str(imp.video_a)),
                                                   ("missing", str(imp.audio))}
    assert "100 bytes" in next(p.message for p in problems if p.kind == "altered")
    assert str(imp.video_a) not in hasher.calls  # a size that differs needs no read


def test_a_tampered_cpl_is_an_integrity_problem(imp: Imp) -> None:
    imp.cpl.write_text(imp.cpl.read_text().replace("01:00:00:00", "02:00:00:00"))
    problems = imf.verify(imf.read(str(imp.folder)))
    assert [(p.kind, p.path) for p in problems] == [("altered", str(imp.cpl))]


@pytest.mark.parametrize("bad", ["../outside.mxf", "/etc/passwd", "sub/../../outside.mxf",
                                 "file:///etc/passwd", "..\\outside.mxf", "link.mxf",
                                 "linkdir/outside.mxf"])
def test_asset_paths_never_leave_the_package(imp: Imp, bad: str) -> None:
    outside = imp.folder.parent / "outside.mxf"
    outside.write_bytes(b"secret")
    (imp.folder / "link.mxf").symlink_to(outside)
    (imp.folder / "linkdir").symlink_to(imp.folder.parent)
    evil = urn()
    imp.write_assetmap(extra=[(evil, bad, False)])
    pkg = imf.read(str(imp.folder))
    (problem,) = pkg.problems
    assert problem.kind == "unsafe" and problem.asset_id == imf.normalise_id(evil)
    assert pkg.assets[imf.normalise_id(evil)].path is None
    hasher = CountingHasher()
    imf.verify(pkg, hasher=hasher)
    assert str(outside) not in hasher.calls
    assert all(p.startswith(str(imp.folder) + os.sep) for p in hasher.calls)


def test_a_track_file_behind_a_symlink_is_refused(imp: Imp) -> None:
    real = imp.folder.parent / "elsewhere.mxf"
    imp.video_b.rename(real)
    imp.video_b.symlink_to(real)
    pkg = imf.read(str(imp.folder))
    assert [(p.kind, p.asset_id) for p in pkg.problems] == [("unsafe", imp.id(imp.video_b))]
    assert "symbolic link" in pkg.problems[0].message
    assert pkg.path_of(imp.ids[imp.video_b]) is None


def billion_laughs(size: int, root: str = "AssetMap") -> bytes:
    ents = "".join(f'<!ENTITY l{i} "{("&l%d;" % (i - 1)) * 10}">' for i in range(1, 12))
    head = f'<?xml version="1.0"?>\n<!DOCTYPE {root} [<!ENTITY l0 "lol">{ents}]>\n'
    body = f"<{root}><!-- " + "x" * size + f" --><Id>&l11;</Id></{root}>"
    return (head + body).encode()


def test_a_10mb_xml_bomb_is_refused_fast(imp: Imp) -> None:
    bomb = billion_laughs(10 << 20)
    assert len(bomb) > 10 << 20
    (imp.folder / "ASSETMAP.xml").write_bytes(bomb)
    t = time.perf_counter()
    pkg = imf.read(str(imp.folder))
    assert time.perf_counter() - t < 2
    assert pkg.assets == {} and pkg.compositions == ()
    assert [p.kind for p in pkg.problems] == ["malformed"]
    assert "DTD" in pkg.problems[0].message
    assert imf.verify(pkg)  # a package whose asset map is refused does not pass


@pytest.mark.parametrize("parse", [imf.parse_xml, imf._parse_expat],
                         ids=["defusedxml", "stdlib"])
@pytest.mark.parametrize("doc", [
    billion_laughs(10 << 20),
    b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a>&e;</a>',
    b"<a>" * 2_000_000 + b"</a>" * 2_000_000,           # 14 MB, nested
    b"<a>" + b"<b/>" * 2_500_000 + b"</a>",             # 10 MB, wide
    b"<a>" + b" " * (17 << 20) + b"</a>",                # over the size cap
], ids=["laughs", "external", "deep", "wide", "large"])
def test_xml_refusals(parse, doc: bytes) -> None:
    t = time.perf_counter()
    with pytest.raises(imf.XmlRefused):
        parse(doc)
    assert time.perf_counter() - t < 2


def test_a_bomb_in_a_cpl_holds_the_package_without_stopping_the_read(imp: Imp) -> None:
    imp.cpl.write_bytes(billion_laughs(1 << 20, "CompositionPlaylist"))
    imp.write_pkl()  # the PKL vouches for the bomb: it is still refused
    pkg = imf.read(str(imp.folder))
    assert pkg.compositions == ()
    assert [(p.kind, p.path) for p in pkg.problems] == [("malformed", str(imp.cpl))]
    assert pkg.roles[str(imp.cpl)] == "paperwork"
    # its track files are no longer composed: assets of the package, judged as media
    assert pkg.roles[str(imp.video_a)] == "asset"


def test_a_supplemental_package_resolves_track_files_in_the_original(tmp_path: Path,
                                                                     imp: Imp) -> None:
    supp = tmp_path / "delivery" / "IMP_SUPP"
    supp.mkdir()
    cpl_id, pkl_id = urn(), urn()
    cpl = supp / "CPL_supp.xml"
    cpl.write_text(
        '<CompositionPlaylist xmlns="http://www.smpte-ra.org/schemas/2067-3/2016" '
        f'xmlns:cc="http://www.smpte-ra.org/schemas/2067-2/2016" xmlns:xsi="{XSI}">'
        f"<Id>{cpl_id}</Id><ContentTitle>SUPP</ContentTitle><EditRate>24 1</EditRate>"
        f"<SegmentList><Segment><Id>{urn()}</Id><SequenceList>"
        + sequence("MainImageSequence", [resource(imp.ids[imp.video_b], 24)], urn())
        + "</SequenceList></Segment></SegmentList></CompositionPlaylist>")
    pkl = supp / "PKL_supp.xml"
    pkl.write_text(packing_list([(cpl_id, cpl, "text/xml")],
                                "http://www.smpte-ra.org/schemas/2067-2/2016/PKL"))
    (supp / "ASSETMAP.xml").write_text(asset_map([(pkl_id, pkl.name, True),
                                                  (cpl_id, cpl.name, False)]))
    assert imf.find_packages(str(tmp_path)) == sorted([str(imp.folder), str(supp)])
    package = imf.read(str(supp))
    (alone,) = imf.verify(package)
    assert alone.kind == "missing" and alone.asset_id == imp.id(imp.video_b)
    assert "record 00:00:00:00" in alone.message
    original = imf.read(str(imp.folder))
    assert imf.verify(package, others=[original]) == []


def test_a_percent_encoded_path_is_found(tmp_path: Path) -> None:
    imp = Imp(tmp_path / "pkg")
    spaced = imp.folder / "video b.mxf"
    imp.video_b.rename(spaced)
    imp.ids[spaced] = imp.ids.pop(imp.video_b)
    imp.video_b = spaced
    (imp.folder / "ASSETMAP.xml").write_text(
        (imp.folder / "ASSETMAP.xml").read_text().replace("video_b.mxf", "video%20b.mxf"))
    pkg = imf.read(str(imp.folder))
    assert pkg.problems == ()
    assert pkg.path_of(imp.ids[spaced]) == str(spaced)
    assert imf.verify(pkg) == []


def test_a_folder_without_an_asset_map_is_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(imf.PackageError):
        imf.read(str(tmp_path))
    assert imf.find_packages(str(tmp_path)) == []


def test_an_unsupported_hash_algorithm_is_unverifiable(imp: Imp) -> None:
    text = imp.pkl.read_text()
    imp.pkl.write_text(text.replace(
        "<Type>application/mxf</Type>",
        '<Type>application/mxf</Type><HashAlgorithm Algorithm="urn:x-made-up"/>', 1))
    problems = imf.verify(imf.read(str(imp.folder)))
    assert [p.kind for p in problems] == ["unverifiable"]


def test_a_smpte_dcp(tmp_path: Path) -> None:
    folder = tmp_path / "DCP_TEST_FTR"
    folder.mkdir()
    pic, snd = folder / "j2c_pic.mxf", folder / "wav_snd.mxf"
    make_mxf(pic, "video", 1)
    make_mxf(snd, "audio", 1)
    pic_id, snd_id, pic2_id, cpl_id, pkl_id = urn(), urn(), urn(), urn(), urn()
    pic2 = folder / "j2c_pic2.mxf"
    make_mxf(pic2, "video", 1)

    def reel(picture: str, sound: str | None) -> str:
        main = (f"<MainPicture><Id>{picture}</Id><EditRate>24 1</EditRate>"
                "<IntrinsicDuration>24</IntrinsicDuration><EntryPoint>0</EntryPoint>"
                "<Duration>24</Duration><FrameRate>24 1</FrameRate></MainPicture>")
        sound_el = (f"<MainSound><Id>{sound}</Id><EditRate>24 1</EditRate>"
                    "<IntrinsicDuration>24</IntrinsicDuration><EntryPoint>0</EntryPoint>"
                    "<Duration>24</Duration></MainSound>") if sound else ""
        return f"<Reel><Id>{urn()}</Id><AssetList>{main}{sound_el}</AssetList></Reel>"

    cpl = folder / "CPL.xml"
    cpl.write_text('<CompositionPlaylist xmlns="http://www.smpte-ra.org/schemas/429-7/2006/CPL">'
                   f"<Id>{cpl_id}</Id><ContentTitleText>DCP_TEST_FTR</ContentTitleText>"
                   "<ContentKind>feature</ContentKind>"
                   f"<ReelList>{reel(pic_id, snd_id)}{reel(pic2_id, None)}</ReelList>"
                   "</CompositionPlaylist>")
    pkl = folder / "PKL.xml"
    pkl.write_text(packing_list([(cpl_id, cpl, "text/xml"), (pic_id, pic, "application/mxf"),
                                 (snd_id, snd, "application/mxf"),
                                 (pic2_id, pic2, "application/mxf")],
                                "http://www.smpte-ra.org/schemas/429-8/2007/PKL"))
    (folder / "ASSETMAP").write_text(asset_map([  # Interop's name, no extension
        (pkl_id, "PKL.xml", True), (cpl_id, "CPL.xml", False), (pic_id, pic.name, False),
        (snd_id, snd.name, False), (pic2_id, pic2.name, False)]))
    pkg = imf.read(str(folder))
    assert pkg.problems == () and pkg.kind == "dcp"
    (comp,) = pkg.compositions
    assert (comp.title, comp.edit_rate, comp.standard, comp.duration) == \
        ("DCP_TEST_FTR", Fraction(24), "dcp-smpte", 48)
    (placed,) = pkg.placements(pic2_id)
    assert placed.resource.segment == 2 and placed.resource.record_timecode == "00:00:01:00"
    assert "reel 2" in placed.describe()
    assert pkg.roles[str(pic)] == pkg.roles[str(snd)] == "track_file"
    assert pkg.roles[str(folder / "ASSETMAP")] == "paperwork"
    assert imf.verify(pkg) == []
    pic.write_bytes(pic.read_bytes()[:-1] + b"\0")
    assert [(p.kind, p.path) for p in imf.verify(imf.read(str(folder)))] == \
        [("altered", str(pic))]


def test_timecode() -> None:
    assert imf._tc_string(0, 24, False) == "00:00:00:00"
    assert imf._tc_string(86400 * 24 + 23, 24, False) == "00:00:00:23"
    # 29.97 drop frame: the first two labels of each minute but every tenth are skipped
    assert imf._tc_string(1800, 30, True) == "00:01:00;02"
    assert imf._tc_string(17982, 30, True) == "00:10:00;00"
    for n in (0, 1799, 1800, 17981, 17982, 107892, 123456):
        assert imf._tc_frames(imf._tc_string(n, 30, True), 30, True) == n
    assert imf._tc_frames("02:10:01.23", 24, False) == (2 * 3600 + 10 * 60 + 1) * 24 + 23


def test_hash_file_reads_once_for_fingerprint_and_pkl_hash(tmp_path: Path) -> None:
    f = tmp_path / "big.mxf"
    data = os.urandom(3 * imf.CHUNK + 17)
    f.write_bytes(data)
    d = imf.hash_file(str(f))
    assert d["sha256"] == hashlib.sha256(data).digest()
    assert imf.pkl_hash(d["sha1"]) == base64.b64encode(hashlib.sha1(data).digest()).decode()
    link = tmp_path / "link.mxf"
    link.symlink_to(f)
    with pytest.raises(OSError):
        imf.hash_file(str(link))


def test_composition_digest_binds_the_cpl_and_every_track_file(imp: Imp) -> None:
    pkg = imf.read(str(imp.folder))
    (comp,) = pkg.compositions
    fps = {comp.path: "sha256:" + hashlib.sha256(imp.cpl.read_bytes()).hexdigest()}
    for p in imp.ids:
        fps[imp.id(p)] = "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()
    one = imf.composition_digest(comp, fps)
    assert one.startswith("sha256:") and len(one) == 71
    fps[imp.id(imp.audio)] = "sha256:" + "0" * 64
    assert imf.composition_digest(comp, fps) != one
