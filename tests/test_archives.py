"""Archives in a delivery: real zip, tar, tar.gz/bz2/xz, gz and 7z files built here from the
sample AI images; extracted, bounded against bombs and traversal, never written outside."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import py7zr
import pytest

from provgate.archives import (ArchiveError, Layout, Limits, Member, archive_kind, expanded,
                               extract, is_archive, layout, look)

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_media"
AI = ("ai_iptc_generated.jpg", "ai_a1111_txt2img.png", "ai_comfyui.png")
MB = 1 << 20


def sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def tree(root: Path) -> set[str]:
    """Every path under ``root``: what a test compares before and after."""
    return {os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files}


def by_name(members: list[Member]) -> dict[str, Member]:
    return {m.name: m for m in members}


def make_zip(path: Path, entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, entries: dict[str, bytes], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def ai_entries(folder: str = "final/") -> dict[str, bytes]:
    return {folder + name: sample(name) for name in AI}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder to extract into, deep enough that ``../../x`` would still land in tmp_path."""
    w = tmp_path / "d1" / "d2" / "work"
    w.mkdir(parents=True)
    return w


def assert_inside(members: list[Member], workdir: Path) -> None:
    real = os.path.realpath(workdir)
    for m in members:
        if m.path:
            assert os.path.commonpath([os.path.realpath(m.path), real]) == real, m
            st = os.lstat(m.path)
            assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, m
    for d, dirs, files in os.walk(workdir):
        for n in dirs + files:
            assert not os.path.islink(os.path.join(d, n))


# -- members come out whole -------------------------------------------------------------------

def test_zip_members_extracted_identical(tmp_path: Path) -> None:
    entries = ai_entries("final/shots/")
    entries["final/readme.txt"] = b"notes"
    archive = make_zip(tmp_path / "delivery.zip", entries)
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("final/empty/", b"")               # a folder entry is not a member
    before = (sha(archive), os.stat(archive).st_mtime_ns)
    with expanded(archive, dir=str(tmp_path)) as members:
        workdir = Path(members[0].path).parent.parent
        assert stat.S_IMODE(os.stat(workdir).st_mode) == 0o700
        assert [m.name for m in members] == list(entries)
        for m in members:
            assert m.error is None and not m.archive
            assert sha(m.path) == hashlib.sha256(entries[m.name]).hexdigest()
            assert m.size == len(entries[m.name])
            assert os.path.basename(m.path) == m.name.rpartition("/")[2]
        assert_inside(members, workdir)
    assert not workdir.exists()                          # the private folder is gone
    assert (sha(archive), os.stat(archive).st_mtime_ns) == before   # opened read-only


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_members_extracted_identical(tmp_path: Path, work: Path, mode: str) -> None:
    entries = ai_entries()
    # by its bytes, not its name
    archive = make_tar(tmp_path / "delivery.bin", entries, mode)
    assert is_archive(archive)
    members = extract(archive, work)
    assert [m.name for m in members] == list(entries)
    for m in members:
        assert m.error is None
        assert sha(m.path) == hashlib.sha256(entries[m.name]).hexdigest()
    assert_inside(members, work)


def test_7z_members_extracted_identical(tmp_path: Path, work: Path) -> None:
    archive = tmp_path / "delivery.7z"
    entries = ai_entries()
    with py7zr.SevenZipFile(archive, "w") as sz:
        for name, data in entries.items():
            sz.writestr(data, name)
    assert archive_kind(archive) == "7z"
    members = extract(archive, work)
    assert sorted(m.name for m in members) == sorted(entries)
    for m in members:
        assert m.error is None
        assert sha(m.path) == hashlib.sha256(entries[m.name]).hexdigest()
    assert_inside(members, work)


def test_7z_symlink_and_encryption(tmp_path: Path, work: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(sample("ai_comfyui.png"))
    (src / "link.png").symlink_to("/etc/passwd")
    archive = tmp_path / "links.7z"
    with py7zr.SevenZipFile(archive, "w") as sz:
        sz.write(src / "a.png", "a.png")
        sz.write(src / "link.png", "link.png")
    found = by_name(extract(archive, work))
    assert sha(found["a.png"].path) == sha(src / "a.png")
    assert found["link.png"].path is None and "symlink" in found["link.png"].error

    locked = tmp_path / "locked.7z"                      # content encrypted, list readable
    with py7zr.SevenZipFile(locked, "w", password="secret") as sz:
        sz.writestr(sample("ai_comfyui.png"), "secret.png")
    (m,) = extract(locked, work)
    assert m.name == "secret.png" and m.path is None and "encrypted" in m.error

    hidden = tmp_path / "hidden.7z"                      # file list encrypted too
    with py7zr.SevenZipFile(hidden, "w", password="secret", header_encryption=True) as sz:
        sz.writestr(sample("ai_comfyui.png"), "secret.png")
    with pytest.raises(ArchiveError, match="encrypted"):
        extract(hidden, work)


def test_single_compressed_file(tmp_path: Path, work: Path) -> None:
    data = sample("ai_a1111_txt2img.png")
    archive = tmp_path / "upload.bin"
    with gzip.GzipFile(filename="shot.png", mode="wb", fileobj=archive.open("wb")) as gz:
        gz.write(data)
    (m,) = extract(archive, work)
    assert m.name == "shot.png" and sha(m.path) == hashlib.sha256(data).hexdigest()


def test_sidecars_stay_beside_their_media(tmp_path: Path, work: Path) -> None:
    archive = make_zip(tmp_path / "d.zip", {
        "shots/clip.mov": sample("sidecar_clip.mov"),
        "shots/clip.mov.xmp": sample("sidecar_clip.mov.xmp"),
        "other/clip.mov": sample("unknown_plate.mov"),
        "shots/.hidden.jpg": sample("ai_iptc_generated.jpg"),
        "shots/-delete_original!.jpg": sample("ai_iptc_generated.jpg"),
    })
    found = by_name(extract(archive, work))
    clip, xmp = found["shots/clip.mov"].path, found["shots/clip.mov.xmp"].path
    assert os.path.dirname(clip) == os.path.dirname(xmp)
    assert os.path.basename(xmp) == os.path.basename(clip) + ".xmp"
    assert os.path.dirname(found["other/clip.mov"].path) != os.path.dirname(clip)
    # hidden and option-like names are judged under a generated name with their suffix
    for name in ("shots/.hidden.jpg", "shots/-delete_original!.jpg"):
        base = os.path.basename(found[name].path)
        assert base.startswith("member-") and base.endswith(".jpg")


# -- not archives, and archives that cannot be opened -------------------------------------------

@pytest.mark.parametrize("name", ["x.zip", "x.tar", "x.tgz", "x.7z", "x.tar.gz"])
def test_media_named_like_an_archive_is_media(tmp_path: Path, work: Path, name: str) -> None:
    fake = tmp_path / name
    fake.write_bytes(sample("ai_iptc_generated.jpg"))
    assert not is_archive(fake) and archive_kind(fake) is None
    with pytest.raises(ArchiveError, match="not an archive"):
        extract(fake, work)


def test_archive_named_like_media_is_an_archive(tmp_path: Path) -> None:
    disguised = make_zip(tmp_path / "plate.jpg", ai_entries())
    assert archive_kind(disguised) == "zip"
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()                  # PK\x05\x06 only
    assert archive_kind(empty) == "zip"
    with expanded(empty) as members:
        assert members == []
    for f in ("unreadable_empty.png", "ai_voice.wav", "ai_storyboard.pdf", "ai_comfyui_video.mov"):
        assert not is_archive(SAMPLES / f)
    assert not is_archive(tmp_path / "missing.zip")
    link = tmp_path / "link.zip"
    link.symlink_to(disguised)
    assert not is_archive(link)                          # never through a link
    with pytest.raises(ArchiveError):
        extract(link, tmp_path)


def test_truncated_and_corrupt_archives_are_unreadable(tmp_path: Path, work: Path) -> None:
    good_zip = make_zip(tmp_path / "good.zip", ai_entries())
    cut_zip = tmp_path / "cut.zip"
    cut_zip.write_bytes(good_zip.read_bytes()[:-200])
    with pytest.raises(ArchiveError, match="zip"):
        extract(cut_zip, work)

    good_tgz = make_tar(tmp_path / "good.tar.gz", ai_entries(), "w:gz")
    cut_tgz = tmp_path / "cut.tar.gz"
    cut_tgz.write_bytes(good_tgz.read_bytes()[: good_tgz.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="truncated or corrupt tar.gz"):
        extract(cut_tgz, work)

    good_7z = tmp_path / "good.7z"
    with py7zr.SevenZipFile(good_7z, "w") as sz:
        sz.writestr(sample("ai_comfyui.png"), "a.png")
    cut_7z = tmp_path / "cut.7z"
    cut_7z.write_bytes(good_7z.read_bytes()[: good_7z.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="7z"):
        extract(cut_7z, work)

    rar = tmp_path / "shots.rar"
    rar.write_bytes(b"Rar!\x1a\x07\x01\x00" + bytes(100))
    assert archive_kind(rar) == "rar"
    with pytest.raises(ArchiveError, match="RAR"):
        extract(rar, work)
    assert tree(work) == set()                           # nothing left of a failed expansion


def test_corrupt_member_is_reported_and_the_rest_extracted(tmp_path: Path, work: Path) -> None:
    data = sample("ai_comfyui.png")
    archive = make_zip(tmp_path / "crc.zip", {"a.png": data, "b.png": data},
                       zipfile.ZIP_STORED)
    raw = bytearray(archive.read_bytes())
    at = raw.index(data) + 100                           # one byte of a.png's stored data
    raw[at] ^= 0xFF
    archive.write_bytes(bytes(raw))
    found = by_name(extract(archive, work))
    assert found["a.png"].path is None and "corrupt member" in found["a.png"].error
    assert sha(found["b.png"].path) == hashlib.sha256(data).hexdigest()
    assert len(tree(work)) == 2                          # b.png and its folder; a.png removed


def test_nested_unreadable_archive_is_a_member_error(tmp_path: Path, work: Path) -> None:
    inner = make_zip(tmp_path / "inner.zip", ai_entries()).read_bytes()
    archive = make_zip(tmp_path / "outer.zip", {"broken.zip": inner[:-100],
                                                "a.png": sample("ai_comfyui.png")})
    found = by_name(extract(archive, work))
    assert found["broken.zip"].path is None and "zip" in found["broken.zip"].error
    assert found["a.png"].error is None


def test_nested_archive_failing_midway_leaves_nothing_behind(tmp_path: Path, work: Path) -> None:
    tgz = make_tar(tmp_path / "inner.tar.gz", {"a.png": sample("ai_comfyui.png"),
                                               "noise.bin": os.urandom(MB)}, "w:gz").read_bytes()
    png = sample("ai_iptc_generated.jpg")
    archive = make_zip(tmp_path / "outer.zip", {"final/inner.tar.gz": tgz[: len(tgz) * 2 // 3],
                                                "final/b.jpg": png}, zipfile.ZIP_STORED)
    members = extract(archive, work)
    assert [m.name for m in members] == ["final/inner.tar.gz", "final/b.jpg"]
    assert "truncated or corrupt tar.gz" in members[0].error and members[0].path is None
    files = {p for p in tree(work) if os.path.isfile(p)}
    assert files == {members[1].path}                    # inner's a.png was taken back


def test_zstd_tar(tmp_path: Path, work: Path) -> None:
    zstd = pytest.importorskip("backports.zstd")
    raw = make_tar(tmp_path / "d.tar", ai_entries()).read_bytes()
    archive = tmp_path / "d.tar.zst"
    archive.write_bytes(zstd.compress(raw))
    assert archive_kind(archive) == "zstd"
    members = extract(archive, work)
    assert [m.name for m in members] == list(ai_entries())
    assert all(m.error is None for m in members)


def test_encrypted_zip_member_is_reported(tmp_path: Path, work: Path) -> None:
    secret, plain = sample("ai_a1111_txt2img.png"), sample("ai_comfyui.png")
    archive = tmp_path / "locked.zip"
    archive.write_bytes(zipcrypto_zip({"secret.png": (secret, b"pw"), "open.png": (plain, None)}))
    with zipfile.ZipFile(archive) as zf:                 # a real ZipCrypto member
        assert zf.read("secret.png", pwd=b"pw") == secret
    found = by_name(extract(archive, work))
    assert found["secret.png"].path is None
    assert found["secret.png"].error == "encrypted member not extracted (password protected)"
    assert sha(found["open.png"].path) == hashlib.sha256(plain).hexdigest()


# -- zip bombs -------------------------------------------------------------------------------

def zeros(n: int) -> Iterator[bytes]:
    block = bytes(MB)
    for _ in range(n // MB):
        yield block


def test_zip_bomb_by_ratio_whole_archive(tmp_path: Path, work: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("final/a.png", sample("ai_comfyui.png"))
        with zf.open("final/zeros.png", "w", force_zip64=True) as out:
            for block in zeros(200 * MB):
                out.write(block)
    assert archive.stat().st_size < MB
    with pytest.raises(ArchiveError, match="zip bomb"):
        extract(archive, work)
    assert tree(work) == set()


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_zip_bzip2_and_lzma_members(tmp_path: Path, work: Path, method: int) -> None:
    entries = ai_entries()
    members = extract(make_zip(tmp_path / "d.zip", entries, method), work)
    assert [m.name for m in members] == list(entries)
    for m in members:
        assert m.error is None and sha(m.path) == hashlib.sha256(entries[m.name]).hexdigest()


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, zipfile.ZIP_DEFLATED])
def test_zip_bomb_with_a_lying_header(tmp_path: Path, work: Path, method: int) -> None:
    """The headers say 5 kB; the bytes written are counted, and no read balloons in memory."""
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", method) as zf:
        zf.writestr("a.png", sample("ai_comfyui.png"))
        with zf.open("zeros.png", "w") as out:
            for block in zeros(64 * MB):
                out.write(block)
    raw = bytearray(archive.read_bytes())
    local = raw.index(b"PK\x03\x04zeros.png"[:4], raw.index(b"zeros.png") - 30)
    central = raw.rindex(b"PK\x01\x02")                # the last entry: zeros.png
    struct.pack_into("<L", raw, local + 22, 5000)
    struct.pack_into("<L", raw, central + 24, 5000)
    archive.write_bytes(bytes(raw))
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo("zeros.png").file_size == 5000
    found = by_name(extract(archive, work))
    assert found["zeros.png"].path is None
    # zipfile stops a deflated member at the declared size (then the CRC fails); bzip2 and
    # LZMA members are decompressed here, a read at a time, and stopped by the bytes written
    expected = "corrupt member" if method == zipfile.ZIP_DEFLATED else "zip bomb: member expands"
    assert found["zeros.png"].error.startswith(expected), found["zeros.png"].error
    assert found["a.png"].error is None
    assert sum(os.path.getsize(p) for p in tree(work) if os.path.isfile(p)) < 2 * MB


def test_zip_bomb_by_ratio_one_member(tmp_path: Path, work: Path) -> None:
    noise = os.urandom(2 * MB)                           # keeps the archive's ratio low
    archive = make_zip(tmp_path / "mixed.zip", {"noise.bin": noise, "zeros.png": bytes(3 * MB),
                                                "a.png": sample("ai_comfyui.png")})
    found = by_name(extract(archive, work))
    assert found["zeros.png"].path is None and found["zeros.png"].error.startswith("zip bomb")
    assert sha(found["noise.bin"].path) == hashlib.sha256(noise).hexdigest()
    assert found["a.png"].error is None


@pytest.mark.parametrize("kind", ["tar.gz", "gz"])
def test_bomb_refused_while_streaming(tmp_path: Path, work: Path, kind: str) -> None:
    """No header tells the real size of a gzip stream: the bytes written are counted."""
    archive = tmp_path / f"bomb.{kind}"
    with gzip.open(archive, "wb", compresslevel=1) as gz:
        if kind == "tar.gz":
            with tarfile.open(fileobj=gz, mode="w|") as tf:
                info = tarfile.TarInfo("zeros.png")
                info.size = 200 * MB
                tf.addfile(info, io.BufferedReader(ZeroReader(info.size)))  # type: ignore
        else:
            for block in zeros(200 * MB):
                gz.write(block)
    size = archive.stat().st_size
    with pytest.raises(ArchiveError, match="zip bomb: the archive expands more than 200x"):
        extract(archive, work)
    assert tree(work) == set()
    # a limit on the total stops it too: by what was written (gz), by what the tar declares
    limits = Limits(max_total_bytes=10 * MB, max_ratio=1e9)
    with pytest.raises(ArchiveError, match="zip bomb: .*10485760"):
        extract(archive, work, limits)
    assert size < 1.5 * MB and tree(work) == set()


class ZeroReader(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        n = min(len(buf), self.left)
        buf[:n] = bytes(n)
        self.left -= n
        return n


def test_7z_bomb_refused_before_expanding(tmp_path: Path, work: Path) -> None:
    archive = tmp_path / "bomb.7z"
    with py7zr.SevenZipFile(archive, "w") as sz:
        sz.writestr(bytes(64 * MB), "zeros.png")
        sz.writestr(sample("ai_comfyui.png"), "a.png")
    with pytest.raises(ArchiveError, match="zip bomb: the archive declares"):
        extract(archive, work)
    assert tree(work) == set()


def test_expansion_has_a_deadline(tmp_path: Path, work: Path) -> None:
    archive = make_zip(tmp_path / "d.zip", ai_entries())
    with pytest.raises(ArchiveError, match="took longer than"):
        extract(archive, work, Limits(max_seconds=1e-9))
    assert tree(work) == set()


def test_tar_header_bomb(tmp_path: Path, work: Path) -> None:
    """A GNU long-name header declaring 100 MB: refused before tarfile reads it into memory."""
    info = tarfile.TarInfo("x")
    info.size = 100 * MB
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[156:157] = tarfile.GNUTYPE_LONGNAME
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header[:512])
    archive = tmp_path / "header.tar"
    archive.write_bytes(bytes(header) + bytes(MB))
    assert archive_kind(archive) == "tar"
    with pytest.raises(ArchiveError, match="^zip bomb: a tar header declares 104857600"):
        extract(archive, work)


def test_zip_bomb_by_count(tmp_path: Path, work: Path) -> None:
    entries = {f"f{i:03d}.txt": b"x" for i in range(30)}
    limits = Limits(max_members=20)
    for archive in (make_zip(tmp_path / "many.zip", entries),
                    make_tar(tmp_path / "many.tar", entries)):
        out = work / archive.name
        out.mkdir()
        with pytest.raises(ArchiveError, match="more than 20 members"):
            extract(archive, out, limits)
        assert tree(out) == set()
        assert len(extract(archive, out, Limits(max_members=30))) == 30


def test_zip_bomb_by_total_size(tmp_path: Path, work: Path) -> None:
    entries = {f"noise{i}.bin": os.urandom(MB) for i in range(4)}
    limits = Limits(max_total_bytes=3 * MB)
    for archive in (make_zip(tmp_path / "big.zip", entries),
                    make_tar(tmp_path / "big.tar.xz", entries, "w:xz")):
        with pytest.raises(ArchiveError, match="zip bomb"):
            extract(archive, work, limits)
        assert tree(work) == set()
    assert len(extract(tmp_path / "big.zip", work, Limits(max_total_bytes=4 * MB))) == 4


def test_nesting_expands_to_the_limit_and_no_further(tmp_path: Path, work: Path) -> None:
    png = sample("ai_a1111_txt2img.png")
    l4 = make_tar(tmp_path / "l4.tar", {"a.png": png}).read_bytes()
    l3 = make_zip(tmp_path / "l3.zip", {"l4.tar": l4}).read_bytes()
    l2 = make_tar(tmp_path / "l2.tar.gz", {"sub/l3.zip": l3}, "w:gz").read_bytes()
    outer = make_zip(tmp_path / "outer.zip", {"final/l2.tar.gz": l2,
                                              "final/b.png": sample("ai_comfyui.png")})
    members = extract(outer, work)                       # depth 3 by default: l4 is the 4th
    found = by_name(members)
    assert [m.name for m in members] == ["final/l2.tar.gz", "final/l2.tar.gz/sub/l3.zip",
                                         "final/l2.tar.gz/sub/l3.zip/l4.tar", "final/b.png"]
    assert found["final/l2.tar.gz"].archive and found["final/l2.tar.gz/sub/l3.zip"].archive
    deep = found["final/l2.tar.gz/sub/l3.zip/l4.tar"]
    assert deep.path is None and deep.error.startswith("zip bomb: archives nested deeper than 3")

    deeper = by_name(extract(outer, tmp_path / "d1", Limits(max_depth=4)))
    leaf = deeper["final/l2.tar.gz/sub/l3.zip/l4.tar/a.png"]
    assert leaf.error is None and sha(leaf.path) == hashlib.sha256(png).hexdigest()


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_depth"):
        Limits(max_depth=0)


# -- traversal and links ---------------------------------------------------------------------

EVIL = ["../../etc/x", "/abs/x", "a/../../x", "C:\\x", "..\\..\\x", "./../x"]


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_traversal_names_never_written(tmp_path: Path, work: Path, fmt: str) -> None:
    data = sample("ai_iptc_generated.jpg")
    entries = {name: data for name in EVIL}
    entries["./ok/a.jpg"] = data
    maker = make_zip if fmt == "zip" else make_tar
    archive = maker(tmp_path / f"evil.{fmt}", entries)
    before = tree(tmp_path)
    assert not os.path.exists("/abs")
    members = extract(archive, work)
    found = by_name(members)
    for name in EVIL:
        m = found[name.removeprefix("./")]              # "./" is dropped from every name
        assert m.path is None and m.error.startswith("path traversal"), m
    assert found["ok/a.jpg"].error is None
    added = tree(tmp_path) - before
    assert all(p.startswith(str(work) + os.sep) for p in added)
    assert len(added) == 2                               # ok/a.jpg and its folder
    assert not os.path.exists("/abs") and not (tmp_path / "d1" / "etc").exists()
    assert_inside(members, work)


def test_tar_links_and_devices_are_not_extracted(tmp_path: Path, work: Path) -> None:
    png = sample("ai_comfyui.png")
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tf:
        def add(name: str, kind: bytes, link: str = "", data: bytes = b"") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(data)
            tf.addfile(info, io.BytesIO(data) if data else None)
        add("escape", tarfile.SYMTYPE, "../../..")
        add("escape/pwned.png", tarfile.REGTYPE, data=png)   # through the link: must not be
        add("passwd", tarfile.SYMTYPE, "/etc/passwd")
        add("hard", tarfile.LNKTYPE, "/etc/passwd")
        add("null", tarfile.CHRTYPE)
        add("pipe", tarfile.FIFOTYPE)
        add("a.png", tarfile.REGTYPE, data=png)
    before = tree(tmp_path)
    members = extract(archive, work)
    found = by_name(members)
    assert "symlink" in found["escape"].error and "../../.." in found["escape"].error
    assert "symlink" in found["passwd"].error
    assert "hardlink" in found["hard"].error
    assert "device" in found["null"].error and "FIFO" in found["pipe"].error
    for name in ("escape", "passwd", "hard", "null", "pipe"):
        assert found[name].path is None
    # the file "below" the link is an ordinary member in the private folder
    assert sha(found["escape/pwned.png"].path) == hashlib.sha256(png).hexdigest()
    assert sha(found["a.png"].path) == hashlib.sha256(png).hexdigest()
    added = tree(tmp_path) - before
    assert all(p.startswith(str(work) + os.sep) for p in added)
    assert_inside(members, work)


def test_zip_symlink_member_is_not_extracted(tmp_path: Path, work: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link.png")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
        zf.writestr("a.png", sample("ai_comfyui.png"))
    found = by_name(extract(archive, work))
    assert found["link.png"].path is None and found["link.png"].error.startswith("symlink")
    assert found["a.png"].error is None


def test_names_as_text(tmp_path: Path, work: Path) -> None:
    png = sample("ai_comfyui.png")
    archive = tmp_path / "names.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tf:
        for name in ("caf\udce9.png", "ショット 1.png", "x" * 2000 + ".png"):
            info = tarfile.TarInfo(name)
            info.size = len(png)
            tf.addfile(info, io.BytesIO(png))
    members = extract(archive, work)
    assert members[0].name == "caf\\xe9.png" and members[0].error is None
    assert members[1].name == "ショット 1.png" and members[1].path.endswith("ショット 1.png")
    assert members[2].path is None and "longer than 1024" in members[2].error


def test_failed_extract_leaves_the_workdir_as_it_was(tmp_path: Path, work: Path) -> None:
    (work / "keep.txt").write_text("mine")
    entries = {f"noise{i}.bin": os.urandom(MB) for i in range(3)}
    archive = make_tar(tmp_path / "big.tar", entries)
    with pytest.raises(ArchiveError):
        extract(archive, work, Limits(max_total_bytes=2 * MB + 10))
    assert tree(work) == {str(work / "keep.txt")}


# -- a real ZipCrypto archive, written by hand (zipfile reads it but cannot write it) -----------

def zipcrypto_zip(entries: dict[str, tuple[bytes, bytes | None]]) -> bytes:
    def crc_update(crc: int, byte: int) -> int:
        return zlib.crc32(bytes([byte]), crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF

    def encrypt(data: bytes, pwd: bytes, check: int) -> bytes:
        k = [0x12345678, 0x23456789, 0x34567890]

        def update(c: int) -> None:
            k[0] = crc_update(k[0], c)
            k[1] = ((k[1] + (k[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
            k[2] = crc_update(k[2], k[1] >> 24)

        for c in pwd:
            update(c)
        out = bytearray()
        for p in os.urandom(11) + bytes([check]) + data:
            t = k[2] | 2
            out.append(p ^ (((t * (t ^ 1)) >> 8) & 0xFF))
            update(p)
        return bytes(out)

    body, central = bytearray(), bytearray()
    for name, (data, pwd) in entries.items():
        crc = zlib.crc32(data)
        payload = encrypt(data, pwd, crc >> 24) if pwd else data
        flags = 1 if pwd else 0
        fname = name.encode()
        offset = len(body)
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, 0, 0, 0, crc, len(payload),
                            len(data), len(fname), 0) + fname + payload
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, flags, 0, 0, 0, crc,
                               len(payload), len(data), len(fname), 0, 0, 0, 0, 0,
                               offset) + fname
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central),
                      len(body), 0)
    return bytes(body + central + end)


# -- archives by their bytes, whatever ExifTool calls them; zips appended to media -----------------

def zip_bytes(entries: dict[str, bytes], comment: bytes = b"",
              method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data, compress_type=zipfile.ZIP_STORED
                        if name == "mimetype" else method)
        zf.comment = comment
    return buf.getvalue()


def layouts(path: Path) -> Layout:
    """layout() of the file, checked against look() from its bytes in memory (what a reader
    that hashed the file whole has)."""
    found = layout(path)
    data = path.read_bytes()
    assert look(data[:512], data) == found
    return found


def gif_tar(path: Path, data: bytes) -> Path:
    info = tarfile.TarInfo("GIF89a\x01\x01\x01\x01\x01\x01\x01;")
    info.size = len(data)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        tf.addfile(info, io.BytesIO(data))
    return path


DOCUMENTS = {   # zips ExifTool types as documents: ODT, EPUB, DOCX, PAGES, IDML, USDZ
    "x.odt": {"mimetype": b"application/vnd.oasis.opendocument.text",
              "content.xml": b"<office:document-content/>", "Pictures/1.png": b""},
    "x.epub": {"mimetype": b"application/epub+zip", "META-INF/container.xml": b"<container/>",
               "OEBPS/images/cover.jpg": b""},
    "x.docx": {"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>",
               "word/media/image1.jpeg": b""},
    "x.pages": {"Index/Document.iwa": bytes(10), "Data/image1.jpg": b""},
    "x.idml": {"mimetype": b"application/vnd.adobe.indesign-idml-package",
               "Links/key.jpg": b""},
    "x.usdz": {"scene.usdc": b"PXR-USDC" + bytes(80), "textures/key.jpg": b""},
}


@pytest.mark.parametrize("name", DOCUMENTS)
def test_documents_that_are_zips_are_archives(tmp_path: Path, work: Path, name: str) -> None:
    entries = {k: v or sample("ai_iptc_generated.jpg") for k, v in DOCUMENTS[name].items()}
    doc = tmp_path / name
    doc.write_bytes(zip_bytes(entries))
    assert layouts(doc) == Layout("zip", False) and is_archive(doc)
    members = extract(doc, work)
    assert [m.name for m in members] == list(entries)
    assert all(m.error is None for m in members)


def test_tar_whose_first_name_is_gif_magic_is_a_tar(tmp_path: Path, work: Path) -> None:
    data = sample("ai_iptc_generated.jpg")
    archive = gif_tar(tmp_path / "frames.tar", data)
    assert archive.read_bytes()[:6] == b"GIF89a"           # ExifTool says GIF
    assert layouts(archive) == Layout("tar", False)
    (m,) = extract(archive, work)
    assert sha(m.path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("host", ["unknown_camera.jpg", "algorithmic_procedural.png",
                                  "unknown_room_tone.wav"])
def test_zip_appended_to_media_is_found_and_expanded(tmp_path: Path, work: Path,
                                                     host: str) -> None:
    ai = sample("ai_iptc_generated.jpg")
    poly = tmp_path / f"plate{Path(host).suffix}"
    poly.write_bytes(sample(host) + zip_bytes({"key_art.jpg": ai}, comment=b"\xff\xd9"))
    assert zipfile.ZipFile(poly).namelist() == ["key_art.jpg"]     # zip readers open it
    assert layouts(poly) == Layout(None, True) and not is_archive(poly)
    with pytest.raises(ArchiveError, match="not an archive"):     # by its head: media
        extract(poly, work)
    (m,) = extract(poly, work, appended=True)
    assert m.name == "key_art.jpg" and sha(m.path) == hashlib.sha256(ai).hexdigest()


def test_zip_end_record_is_looked_for_in_the_whole_tail(tmp_path: Path) -> None:
    jpeg, ai = sample("unknown_camera.jpg"), sample("ai_iptc_generated.jpg")
    # the longest comment a zip can have: its end record 64 KiB + 22 bytes from the end
    far = tmp_path / "far.jpg"
    far.write_bytes(jpeg + zip_bytes({"a.jpg": ai}, comment=b"\0" * 0xFFFF))
    assert zipfile.ZipFile(far).namelist() == ["a.jpg"] and layouts(far).appended
    # a central directory longer than the tail: read where it starts
    many = tmp_path / "many.png"
    many.write_bytes(sample("algorithmic_procedural.png") + zip_bytes(
        {f"{'n' * 200}{i:04d}.txt": b"x" for i in range(400)}, method=zipfile.ZIP_STORED))
    assert layouts(many).appended and layout(many).appended
    # a zip64 end record
    z64 = io.BytesIO()
    with zipfile.ZipFile(z64, "w") as zf:
        with zf.open("a.jpg", "w", force_zip64=True) as out:
            out.write(ai)
    big = tmp_path / "z64.jpg"
    big.write_bytes(jpeg + z64.getvalue())
    assert layouts(big).appended


def test_what_is_no_appended_zip(tmp_path: Path) -> None:
    jpeg = sample("unknown_camera.jpg")
    cases = {
        "plain.jpg": jpeg,
        "sig_only.jpg": jpeg + b"PK\x05\x06" + bytes(18),                  # an end, no directory
        "junk_end.jpg": jpeg + b"PK\x05\x06" + struct.pack("<4H2LH", 0, 0, 1, 1, 46, 0, 0),
        "empty_zip.jpg": jpeg + zip_bytes({}),                            # nothing in it
        "short.jpg": jpeg + b"PK\x05\x06\0\0",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        assert not layouts(tmp_path / name), name
    for f in ("ai_voice.wav", "ai_storyboard.pdf", "ai_comfyui_video.mov", "unreadable_empty.png"):
        assert not layout(SAMPLES / f), f
    assert not layout(tmp_path / "missing.jpg")
    zipped = make_zip(tmp_path / "d.zip", ai_entries())            # a zip's own end: not appended
    assert layouts(zipped) == Layout("zip", False)
    (tmp_path / "link.jpg").symlink_to(tmp_path / "plain.jpg")
    assert layout(tmp_path / "link.jpg") == Layout()                # never through a link


def test_zip_appended_to_a_tar_is_expanded_too(tmp_path: Path, work: Path) -> None:
    png, ai = sample("ai_comfyui.png"), sample("ai_iptc_generated.jpg")
    both = tmp_path / "frames.tar"
    both.write_bytes(make_tar(tmp_path / "t.tar", {"f1.png": png}).read_bytes()
                     + zip_bytes({"key.jpg": ai}))
    assert layouts(both) == Layout("tar", True)
    assert [m.name for m in extract(both, work)] == ["f1.png"]
    assert [m.name for m in extract(both, work, appended=True)] == ["key.jpg"]


def test_member_with_an_appended_zip_is_media_and_an_archive(tmp_path: Path, work: Path) -> None:
    jpeg, ai = sample("unknown_camera.jpg"), sample("ai_iptc_generated.jpg")
    poly = jpeg + zip_bytes({"key.jpg": ai})
    outer = make_zip(tmp_path / "stills.zip", {"shots/plate.jpg": poly, "b.png": b"x"})
    members = extract(outer, work)
    found = by_name(members)
    assert [m.name for m in members] == ["shots/plate.jpg", "shots/plate.jpg/key.jpg", "b.png"]
    host = found["shots/plate.jpg"]
    assert not host.archive and host.error is None and sha(host.path) == \
        hashlib.sha256(poly).hexdigest()                            # judged as media too
    assert sha(found["shots/plate.jpg/key.jpg"].path) == hashlib.sha256(ai).hexdigest()
    # an appended zip that cannot be opened is a member error; the host is still judged
    broken = jpeg + b"PK\x01\x02" + bytes(42) + b"PK\x05\x06" + struct.pack(
        "<4H2LH", 0, 0, 1, 1, 46, len(jpeg), 0)
    outer = make_zip(tmp_path / "broken.zip", {"plate.jpg": broken})
    found = by_name(extract(outer, work))
    assert found["plate.jpg"].path and found["plate.jpg"].error is None
    bad = found["plate.jpg (appended zip)"]
    assert bad.path is None and "zip" in bad.error
    # nesting counts: at the depth limit the appended zip is not expanded, and says so
    deep = by_name(extract(make_zip(tmp_path / "deep.zip", {"plate.jpg": poly}), work,
                           Limits(max_depth=1)))
    assert deep["plate.jpg"].path and "nested deeper" in deep["plate.jpg (appended zip)"].error


# -- zips that hide entries from their central directory ------------------------------------------

def hidden_first(tmp_path: Path) -> Path:
    """The red team's zip: the AI member's local entry, then a whole zip of a clean plate."""
    raw = zip_bytes({"key_art.jpg": sample("ai_iptc_generated.jpg")}, method=zipfile.ZIP_STORED)
    f = io.BytesIO()
    f.write(raw[:raw.rfind(b"PK\x01\x02")])
    with zipfile.ZipFile(f, "a") as zf:
        zf.writestr("plate.jpg", sample("unknown_camera.jpg"))
    path = tmp_path / "stills.zip"
    path.write_bytes(f.getvalue())
    assert zipfile.ZipFile(path).namelist() == ["plate.jpg"]
    return path


def drop_from_directory(raw: bytes, name: str) -> bytes:
    """The zip without ``name``'s central directory entry: its local entry stays."""
    start = raw.rfind(b"PK\x05\x06")
    count, size, offset = struct.unpack_from("<H2L", raw, start + 10)
    central, pos, kept = raw[offset:offset + size], 0, b""
    while pos < len(central):
        n, m, k = struct.unpack_from("<3H", central, pos + 28)
        entry = central[pos:pos + 46 + n + m + k]
        if entry[46:46 + n] != name.encode():
            kept += entry
        pos += len(entry)
    end = bytearray(raw[start:])
    struct.pack_into("<2H2L", end, 8, count - 1, count - 1, len(kept), offset)
    return raw[:offset] + kept + bytes(end)


def test_zip_hiding_a_local_entry_is_refused(tmp_path: Path, work: Path) -> None:
    with pytest.raises(ArchiveError, match="hidden entry: a local header at byte 0"):
        extract(hidden_first(tmp_path), work)
    entries = {"a.jpg": sample("unknown_camera.jpg"), "key.jpg": sample("ai_iptc_generated.jpg"),
               "z.jpg": sample("unknown_camera.jpg")}
    for hidden in ("key.jpg", "z.jpg"):                 # between entries; before the directory
        path = tmp_path / f"hidden_{hidden}.zip"
        path.write_bytes(drop_from_directory(zip_bytes(entries), hidden))
        assert hidden not in zipfile.ZipFile(path).namelist()
        with pytest.raises(ArchiveError, match="hidden entry: a local header at byte [1-9]"):
            extract(path, work)
    assert tree(work) == set()


def test_zip_with_unexplained_or_overlapping_bytes_is_refused(tmp_path: Path, work: Path) -> None:
    raw = zip_bytes({"a.jpg": sample("unknown_camera.jpg"), "b.png": sample("ai_comfyui.png")},
                    method=zipfile.ZIP_STORED)
    cut = raw.index(b"PK\x03\x04", 4)                  # b.png's local header
    junk = b"\0" * 100
    gap = bytearray(raw[:cut] + junk + raw[cut:])      # every later offset moved by 100
    start = gap.rfind(b"PK\x05\x06")
    size, offset = struct.unpack_from("<2L", gap, start + 12)
    struct.pack_into("<L", gap, start + 16, offset + len(junk))
    central = offset + len(junk)
    second = gap.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<L", gap, second + 42, cut + len(junk))
    (tmp_path / "gap.zip").write_bytes(bytes(gap))
    assert zipfile.ZipFile(tmp_path / "gap.zip").read("b.png") == sample("ai_comfyui.png")
    with pytest.raises(ArchiveError, match="100 unexplained bytes at byte"):
        extract(tmp_path / "gap.zip", work)
    # two entries sharing bytes (the overlap of a "better" zip bomb)
    lap = bytearray(raw)
    start = lap.rfind(b"PK\x05\x06")
    offset = struct.unpack_from("<L", lap, start + 16)[0]
    second = lap.index(b"PK\x01\x02", offset + 4)
    struct.pack_into("<L", lap, second + 42, 40)      # b.png's header inside a.jpg's data
    lap[40:44] = b"PK\x03\x04"
    (tmp_path / "lap.zip").write_bytes(bytes(lap))
    with pytest.raises(ArchiveError, match="overlap|no local header"):
        extract(tmp_path / "lap.zip", work)
    assert tree(work) == set()


def test_real_zip_layouts_are_accepted(tmp_path: Path, work: Path) -> None:
    """Data descriptors (with and without a signature), Zip64, comments, a self-extractor's
    stub, USDZ's 64-byte alignment: all accounted for, nothing refused."""
    ai = sample("ai_iptc_generated.jpg")
    made: dict[str, bytes] = {}

    class Pipe(io.RawIOBase):                           # not seekable: data descriptors
        def __init__(self) -> None:
            self.buf = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b) -> int:  # type: ignore[override]
            self.buf += b
            return len(b)

    pipe = Pipe()
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.jpg", ai)
        zf.writestr("b.jpg", ai)
    made["descriptors.zip"] = bytes(pipe.buf)
    no_sig = bytearray(pipe.buf)                        # the same, descriptors without PK\7\8
    made["descriptors_nosig.zip"] = strip_descriptor_signatures(bytes(no_sig))
    z64 = io.BytesIO()
    with zipfile.ZipFile(z64, "w") as zf:
        for name in ("a.jpg", "b.jpg"):
            with zf.open(name, "w", force_zip64=True) as out:
                out.write(ai)
    made["zip64.zip"] = z64.getvalue()
    made["comment.zip"] = zip_bytes({"a.jpg": ai}, comment=b"delivered " * 500)
    made["usdz.usdz"] = aligned_zip({"scene.usdc": b"PXR-USDC" + bytes(100), "tex/a.jpg": ai})
    stub = b"MZ" + bytes(1000)                         # zip -A: offsets past the stub
    made["sfx.exe"] = absolute_offsets(stub, zip_bytes({"a.jpg": ai}))
    for name, data in made.items():
        (tmp_path / name).write_bytes(data)
        kind = layout(tmp_path / name)
        members = extract(tmp_path / name, work, appended=kind.kind is None)
        assert members and all(m.error is None for m in members), (name, members)
        assert all(sha(m.path) == hashlib.sha256(ai).hexdigest()
                   for m in members if m.name.endswith(".jpg")), name


@pytest.mark.skipif(not (os.path.exists("/usr/bin/zip") or os.path.exists("/usr/bin/jar")),
                    reason="no zip or jar tool")
def test_zips_from_zip_and_jar_tools_are_accepted(tmp_path: Path, work: Path) -> None:
    import shutil
    import subprocess

    (tmp_path / "a.jpg").write_bytes(sample("ai_iptc_generated.jpg"))
    made = []
    if shutil.which("zip"):
        streamed = subprocess.run(["zip", "-q", "-", "a.jpg"], cwd=tmp_path, check=True,
                                  stdout=subprocess.PIPE).stdout    # to a pipe: descriptors
        assert streamed[6] & 0x08
        (tmp_path / "stream.zip").write_bytes(streamed)
        subprocess.run(["zip", "-q", "-fz", str(tmp_path / "z64.zip"), "a.jpg"],
                       cwd=tmp_path, check=True)
        made += ["stream.zip", "z64.zip"]
    if shutil.which("jar"):
        subprocess.run(["jar", "cf", str(tmp_path / "a.jar"), "a.jpg"], cwd=tmp_path, check=True)
        made.append("a.jar")
    for name in made:
        members = extract(tmp_path / name, work)
        assert members and all(m.error is None for m in members), (name, members)


def strip_descriptor_signatures(raw: bytes) -> bytes:
    """A zip written with signed data descriptors, rewritten with unsigned ones (12 bytes)."""
    zf = zipfile.ZipFile(io.BytesIO(raw))
    out, central, moved = bytearray(), bytearray(), {}
    for info in zf.infolist():
        at = info.header_offset
        n, m = struct.unpack_from("<2H", raw, at + 26)
        data_end = at + 30 + n + m + info.compress_size
        assert raw[data_end:data_end + 4] == b"PK\x07\x08"
        moved[at] = len(out)
        out += raw[at:data_end] + raw[data_end + 4:data_end + 16]
    start_dir = len(out)
    pos = zf.start_dir
    for info in zf.infolist():
        n, m, k = struct.unpack_from("<3H", raw, pos + 28)
        entry = bytearray(raw[pos:pos + 46 + n + m + k])
        struct.pack_into("<L", entry, 42, moved[info.header_offset])
        central += entry
        pos += len(entry)
    end = bytearray(raw[raw.rfind(b"PK\x05\x06"):])
    struct.pack_into("<2L", end, 12, len(central), start_dir)
    return bytes(out + central + end)


def aligned_zip(entries: dict[str, bytes]) -> bytes:
    """Stored members whose data starts on a 64-byte boundary, padded in the extra field (as
    USDZ requires)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            pad = -(buf.tell() + 30 + len(name.encode()) + 4) % 64
            info.extra = struct.pack("<2H", 0x1986, pad) + bytes(pad)
            zf.writestr(info, data)
    return buf.getvalue()


def absolute_offsets(stub: bytes, raw: bytes) -> bytes:
    """``stub`` + the zip with every offset moved past the stub (``zip -A``)."""
    body = bytearray(stub + raw)
    start = body.rfind(b"PK\x05\x06")
    size, offset = struct.unpack_from("<2L", body, start + 12)
    struct.pack_into("<L", body, start + 16, offset + len(stub))
    pos = len(stub) + offset
    while body[pos:pos + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack_from("<3H", body, pos + 28)
        local = struct.unpack_from("<L", body, pos + 42)[0]
        struct.pack_into("<L", body, pos + 42, local + len(stub))
        pos += 46 + n + m + k
    return bytes(body)


# -- nothing but ArchiveError leaves an expansion -------------------------------------------------

def test_zip_entry_with_an_empty_name(tmp_path: Path, work: Path) -> None:
    archive = tmp_path / "stills.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("key_art.jpg", sample("ai_iptc_generated.jpg"))
        zf.writestr(zipfile.ZipInfo(""), b"x")          # ZipInfo.is_dir() raises IndexError
    members = extract(archive, work)
    assert [m.name for m in members] == ["key_art.jpg", ""]
    assert members[0].error is None and "empty member name" in members[1].error


def test_unexpected_errors_become_archive_errors(tmp_path: Path, work: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import provgate.archives as archives

    archive = make_zip(tmp_path / "d.zip", ai_entries())

    def boom(*args: object) -> None:
        raise IndexError("crafted")

    monkeypatch.setattr(archives, "_zip_refused", boom)
    with pytest.raises(ArchiveError, match="cannot expand the archive: IndexError: crafted"):
        extract(archive, work)
    assert tree(work) == set()
    monkeypatch.undo()

    def member_boom(*args: object) -> None:             # one member's read: that member only
        raise KeyError("crafted")

    real = archives._zip_member
    calls = iter(range(100))
    monkeypatch.setattr(archives, "_zip_member",
                        lambda zf, info: member_boom() if next(calls) == 0 else real(zf, info))
    members = extract(archive, work)
    assert "corrupt member" in members[0].error and all(m.error is None for m in members[1:])
    monkeypatch.undo()
    with pytest.raises(ArchiveError, match="cannot make a folder"):
        with expanded(archive, dir=str(tmp_path / "no" / "such")):
            pass


# -- the gate: archives by their bytes, polyglots, and nothing escapes judging ---------------------

def final_folder(tmp_path: Path) -> Path:
    final = tmp_path / "EP101" / "final"
    final.mkdir(parents=True)
    return final


def test_gate_judges_documents_polyglots_and_nested_polyglots(tmp_path: Path) -> None:
    from conftest import run_json

    final = final_folder(tmp_path)
    jpeg, ai = sample("unknown_camera.jpg"), sample("ai_iptc_generated.jpg")
    clean_docx = {"[Content_Types].xml": b'<?xml version="1.0"?><Types/>',
                  "word/document.xml": b'<?xml version="1.0"?><w:document/>',
                  "word/media/image1.jpeg": jpeg}
    (final / "clean.docx").write_bytes(zip_bytes(clean_docx))
    (final / "clean.epub").write_bytes(zip_bytes({"mimetype": b"application/epub+zip",
                                                  "OEBPS/cover.jpg": jpeg}))
    (final / "plate.jpg").write_bytes(jpeg + zip_bytes({"key.jpg": ai}))
    (final / "stills.zip").write_bytes(zip_bytes({"shots/plate.jpg": jpeg + zip_bytes(
        {"key.jpg": ai}), "shots/b.jpg": jpeg}))
    (final / "clean_poly.jpg").write_bytes(jpeg + zip_bytes({"b.jpg": jpeg}))
    (final / "scene.usdz").write_bytes(aligned_zip({"scene.usdc": b"PXR-USDC" + bytes(100),
                                                    "textures/key.jpg": ai}))
    (final / "script.odt").write_bytes(zip_bytes({
        "mimetype": b"application/vnd.oasis.opendocument.text",
        "content.xml": b'<?xml version="1.0"?><office:document-content/>',
        "Pictures/key.jpg": ai}))
    by = {Path(r["path"]).name: r for r in run_json("check", final)}
    for name in ("clean.docx", "clean.epub", "clean_poly.jpg"):    # XML members: unknown
        assert by[name]["kind"] == "unknown" and by[name]["action"] == "allow", by[name]
    assert any("zip appended" in w for w in by["clean_poly.jpg"]["warnings"])
    for name in ("plate.jpg", "stills.zip", "scene.usdz", "script.odt"):
        assert by[name]["kind"] == "ai_generated" and by[name]["action"] == "block", by[name]
    assert any("appended zip member key.jpg" in e["tag"] for e in by["plate.jpg"]["evidence"])
    assert any("shots/plate.jpg/key.jpg" in e["tag"] for e in by["stills.zip"]["evidence"])


def test_gate_holds_what_fails_while_judging_an_archive(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import run_json

    from provgate import stages

    final = final_folder(tmp_path)
    (final / "stills.zip").write_bytes(zip_bytes({"a.jpg": sample("unknown_camera.jpg")}))
    (final / "plate.jpg").write_bytes(sample("unknown_camera.jpg") + zip_bytes(
        {"b.jpg": sample("unknown_camera.jpg")}))
    (final / "hidden.zip").write_bytes(hidden_first(tmp_path).read_bytes())

    def boom(*args: object) -> None:
        raise IndexError("crafted")

    monkeypatch.setattr(stages, "_judge_members", boom)
    by = {Path(r["path"]).name: r for r in run_json("check", final)}
    assert by["stills.zip"]["kind"] == "unreadable" and by["stills.zip"]["action"] == "escalate"
    assert by["stills.zip"]["error"] == "archive not judged: IndexError: crafted"
    assert by["plate.jpg"]["kind"] == "unreadable" and by["plate.jpg"]["action"] == "escalate"
    assert "appended zip not judged: IndexError" in by["plate.jpg"]["error"]
    assert by["hidden.zip"]["action"] == "escalate" and "hidden entry" in by["hidden.zip"]["error"]


def test_an_unreadable_host_stays_unreadable_beside_its_appended_zip() -> None:
    from provgate.record import Verdict, unreadable
    from provgate.verdict import combine_members

    host = unreadable("truncated or corrupt file: JPEG cut short")
    clean = Verdict("unknown", "absent")
    combined = combine_members(host, [("b.jpg", clean)], appended=True)
    assert combined.kind == "unreadable" and "JPEG cut short" in combined.error
    # an archive's own metadata does not make it unreadable: its members decide
    assert combine_members(host, [("b.jpg", clean)]).kind == "unknown"
    ai = Verdict("ai_generated", "absent")
    assert combine_members(host, [("k.jpg", ai)], appended=True).kind == "ai_generated"
    # a tar's members, then its appended zip's: an unjudged tar member is not forgotten
    tar = combine_members(Verdict("unknown", "absent"), [("x.bin", unreadable("Unknown"))])
    assert tar.kind == "unreadable"
    both = combine_members(tar, [("b.jpg", clean)], appended=True)
    assert both.kind == "unreadable" and "x.bin" in both.error


def test_zip_directory_longer_than_its_end_record_says_is_counted(tmp_path: Path,
                                                                   work: Path) -> None:
    """zipfile reads entries for as many bytes as the directory declares, whatever the count
    in the end record: the entries are counted before it parses them."""
    raw = bytearray(zip_bytes({f"f{i:03d}.txt": b"x" for i in range(30)}))
    end = raw.rfind(b"PK\x05\x06")
    struct.pack_into("<2H", raw, end + 8, 1, 1)        # "one entry"
    liar = tmp_path / "liar.zip"
    liar.write_bytes(bytes(raw))
    assert len(zipfile.ZipFile(liar).infolist()) == 30
    with pytest.raises(ArchiveError, match="more than 20 members"):
        extract(liar, work, Limits(max_members=20))
    assert len(extract(liar, work, Limits(max_members=30))) == 30
