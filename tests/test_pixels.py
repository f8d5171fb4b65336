"""Pixel evidence (provgate.pixels): stealth parameters and the SD/SDXL DWT-DCT watermark.

Every marked image here is made by the test: stealth blocks are written in the extension's
format by the helper below, watermarks by the reference embedder of the ``invisible-watermark``
package (its ``maxDct`` module, loaded from the installed package without the package's
``__init__``, which imports torch). No mocks: real PNG/WebP/JPEG files through Pillow.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import struct
import time
import zlib
from pathlib import Path
from types import ModuleType

import pytest

np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")

from provgate import pixels  # noqa: E402
from provgate.errors import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "sample_media" / "human_capture.jpg"
REAL_STEALTH = ROOT.parent / "shared" / "realworld" / "wild" / "sdparsers_automatic1111_stealth.png"

PARAMS = ("portrait of a lighthouse keeper at dusk, film grain\n"
          "Negative prompt: blurry, lowres\n"
          "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567890, "
          "Size: 768x512, Model hash: 0123abcd, Model: someModel_v1, Version: v1.10.1")


def _require(module: str) -> ModuleType:
    """A module the reference side of a test needs: skipped on a developer's machine without
    it, a failure in CI (make test installs it; .ci/run sets PROVGATE_REQUIRE_TOOLS=1)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        message = f"{module} is not installed (make test installs it)"
        if os.environ.get("PROVGATE_REQUIRE_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def reference() -> ModuleType:
    """imwatermark's dwtDct embedder/decoder (``imwatermark/maxDct.py``) from the installed
    package. Importing ``imwatermark`` itself needs torch (its RivaGAN module), which the
    dwtDct method does not use, so the module is loaded on its own."""
    _require("cv2")
    _require("pywt")
    spec = importlib.util.find_spec("imwatermark")
    if spec is None or not spec.submodule_search_locations:
        message = "invisible-watermark is not installed (make test installs it)"
        if os.environ.get("PROVGATE_REQUIRE_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    path = Path(spec.submodule_search_locations[0]) / "maxDct.py"
    mod_spec = importlib.util.spec_from_file_location("_imwatermark_maxdct", path)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A photo-like 1024 x 768 frame: the sample capture upscaled, with seeded sensor grain
    (a bare upscale is too smooth to hold every watermark bit, as real photos are not)."""
    base = Image.open(PHOTO).convert("RGB").resize((1024, 768), Image.BICUBIC)
    grain = np.random.default_rng(13).normal(0, 8, (768, 1024, 3))
    return np.clip(np.round(np.asarray(base, dtype=np.float64) + grain), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------- stealth helpers


def _stealth_bits(text: str, signature: str, compressed: bool) -> np.ndarray:
    """The extension's bit stream: 15-byte signature, 32-bit count of payload bits, payload."""
    payload = gzip.compress(text.encode()) if compressed else text.encode()
    stream = signature.encode() + struct.pack(">I", len(payload) * 8) + payload
    return np.unpackbits(np.frombuffer(stream, dtype=np.uint8))


def _embed_column_major(channel: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Write ``bits`` into the least significant bits of a (height, width[, k]) plane, pixels
    taken column by column (x outer, y inner), channels in turn within a pixel."""
    plane = np.ascontiguousarray(np.swapaxes(channel, 0, 1))  # (width, height[, k]) in C order
    flat = plane.reshape(-1)
    assert bits.size <= flat.size, "image too small for the payload"
    flat[:bits.size] = (flat[:bits.size] & 0xFE) | bits
    return np.swapaxes(plane, 0, 1)


def _stealth_image(photo: np.ndarray, text: str = PARAMS, mode: str = "alpha",
                   compressed: bool = True) -> Image.Image:
    rgb = photo[:256, :384].copy()
    if mode == "alpha":
        sig = "stealth_pngcomp" if compressed else "stealth_pnginfo"
        alpha = np.full(rgb.shape[:2], 255, dtype=np.uint8)
        alpha = _embed_column_major(alpha, _stealth_bits(text, sig, compressed))
        return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    sig = "stealth_rgbcomp" if compressed else "stealth_rgbinfo"
    return Image.fromarray(_embed_column_major(rgb, _stealth_bits(text, sig, compressed)), "RGB")


# ---------------------------------------------------------------------------- stealth


def test_stealth_alpha_gzip_png(tmp_path: Path, photo: np.ndarray) -> None:
    path = tmp_path / "generated.png"
    _stealth_image(photo).save(path)
    found = pixels.detect(str(path))
    assert len(found) == 1
    sig = found[0]
    assert (sig.kind, sig.source, sig.tag, sig.marker) == (
        "ai_generated", "pixels", "Pixels:StealthAlphaLSB", "pixels-stealth-pnginfo")
    assert sig.value == PARAMS
    assert "stealth_pngcomp" in sig.meaning and "A1111-style parameter block" in sig.meaning


@pytest.mark.parametrize("compressed", [False, True])
def test_stealth_rgb_bits_in_lossless_webp(tmp_path: Path, photo: np.ndarray,
                                           compressed: bool) -> None:
    path = tmp_path / "generated.webp"
    _stealth_image(photo, mode="rgb", compressed=compressed).save(path, lossless=True)
    found = pixels.detect(path)
    assert [(s.kind, s.tag) for s in found] == [("ai_generated", "Pixels:StealthRGBLSB")]
    assert found[0].value == PARAMS
    assert ("stealth_rgbcomp" if compressed else "stealth_rgbinfo") in found[0].meaning


def test_stealth_uncompressed_alpha_and_long_text_is_bounded(tmp_path: Path,
                                                             photo: np.ndarray) -> None:
    long_prompt = "masterpiece, " * 400 + "\n" + PARAMS
    path = tmp_path / "long.png"
    _stealth_image(photo, long_prompt, compressed=False).save(path)
    [sig] = pixels.detect(path)
    assert sig.kind == "ai_generated" and "stealth_pnginfo" in sig.meaning
    assert len(sig.value) <= pixels.DEFAULT_LIMITS.value_chars
    assert sig.value.startswith("masterpiece, ") and sig.value.endswith("Version: v1.10.1")


def test_stealth_gzip_bomb_is_cut_at_the_text_limit(tmp_path: Path, photo: np.ndarray) -> None:
    """20 MB of text gzips to ~20 KB: it fits the pixels, and inflates only to the limit."""
    bomb = "Steps: 20, Sampler: Euler, Seed: 1, " + "a" * 20_000_000
    assert len(gzip.compress(bomb.encode())) < 30_000
    rgb = np.asarray(Image.fromarray(photo).resize((512, 512)))
    alpha = _embed_column_major(np.full((512, 512), 255, np.uint8),
                                _stealth_bits(bomb, "stealth_pngcomp", True))
    path = tmp_path / "bomb.png"
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    limits = pixels.PixelLimits(max_text_bytes=4096)
    t0 = time.monotonic()
    [sig] = pixels.detect(path, limits)
    assert time.monotonic() - t0 < 5
    assert sig.kind == "ai_generated" and "cut at the size limit" in sig.meaning
    assert len(sig.value) <= limits.value_chars


def test_stealth_signature_with_a_broken_payload_is_only_possible(tmp_path: Path,
                                                                  photo: np.ndarray) -> None:
    """The signature without a readable gzip stream: a hint, not a parameter block."""
    bits = _stealth_bits(PARAMS, "stealth_pngcomp", True)
    bits[152 + 8 * 20:152 + 8 * 40] ^= 1  # flip bits inside the deflate data
    alpha = _embed_column_major(np.full((256, 384), 255, np.uint8), bits)
    path = tmp_path / "broken.png"
    Image.fromarray(np.dstack([photo[:256, :384], alpha]), "RGBA").save(path)
    [sig] = pixels.detect(path)
    assert sig.kind == "ai_possible" and sig.marker == "pixels-stealth-unreadable"
    assert "could not be read" in sig.meaning


def test_stealth_length_beyond_the_image_is_not_read(tmp_path: Path, photo: np.ndarray) -> None:
    bits = np.unpackbits(np.frombuffer(b"stealth_pngcomp" + struct.pack(">I", 0xFFFFFFF0),
                                       dtype=np.uint8))
    alpha = _embed_column_major(np.full((256, 384), 255, np.uint8), bits)
    path = tmp_path / "liar.png"
    Image.fromarray(np.dstack([photo[:256, :384], alpha]), "RGBA").save(path)
    [sig] = pixels.detect(path)
    assert sig.kind == "ai_possible" and "does not fit the image" in sig.value


def test_stealth_in_a_real_a1111_file() -> None:
    """The one real stealth file in ../shared/realworld (read in place, never copied)."""
    if not REAL_STEALTH.is_file():
        pytest.skip("../shared/realworld is not beside this checkout")
    [sig] = pixels.detect(REAL_STEALTH)
    assert sig.kind == "ai_generated" and "stealth_pngcomp" in sig.meaning
    assert "Model: realisticVisionV51_v51VAE" in sig.value


# -------------------------------------------------------------------------- watermark


def _mark(reference: ModuleType, rgb: np.ndarray, bits: tuple[int, ...],
          variant: pixels.Variant) -> np.ndarray:
    """Embed as a pipeline does: hand imwatermark BGR (or, swapped, RGB) uint8 or float32
    pixels, then store the result as 8-bit RGB."""
    handed = rgb if variant.swapped else rgb[:, :, ::-1]
    handed = np.ascontiguousarray(handed, dtype=np.float32 if variant.floating else np.uint8)
    out = reference.EmbedMaxDct(list(bits), wmLen=len(bits), scales=[0, 36, 36],
                                block=4).encode(handed)
    if variant.floating:
        out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out if variant.swapped else out[:, :, ::-1])


def _watermark(key: str) -> pixels.Watermark:
    return next(w for w in pixels.WATERMARKS if w.key == key)


def _variant(key: str) -> pixels.Variant:
    return next(v for v in pixels.VARIANTS if v.key == key)


def test_the_fixed_messages_are_the_pipelines() -> None:
    sdxl, sd1, sd2 = (_watermark(k) for k in ("sdxl", "sd1", "sd2"))
    # generative-models/diffusers: WATERMARK_BITS of 0b1011...0110, 48 bits
    assert "".join(map(str, sdxl.bits)) == bin(0b101100111110110010010000011110111011000110011110)[2:]
    assert len(sdxl.bits) == 48
    assert np.packbits(np.array(sd1.bits, np.uint8)).tobytes() == b"StableDiffusionV1"
    assert np.packbits(np.array(sd2.bits, np.uint8)).tobytes() == b"SDV2"


def test_thresholds_bound_the_chance_of_a_false_match() -> None:
    tries = len(pixels.WATERMARKS) * len(pixels.VARIANTS)
    for w in pixels.WATERMARKS:
        n = len(w.bits)
        assert pixels._tail(n, w.strong) * tries <= pixels.FAMILY_P_STRONG
        assert pixels._tail(n, w.weak) * tries <= pixels.FAMILY_P_WEAK
        assert w.strong >= pixels.FLOOR_STRONG * n and w.weak >= pixels.FLOOR_WEAK * n
        v = pixels.VARIANTS[0]
        assert pixels.WatermarkReading(w, v, w.strong).kind == "ai_generated"
        assert pixels.WatermarkReading(w, v, w.strong - 1).kind == "ai_possible"
        assert pixels.WatermarkReading(w, v, w.weak - 1).kind is None
    assert [(w.key, w.strong, w.weak) for w in pixels.WATERMARKS] == [
        ("sdxl", 44, 41), ("sd1", 116, 102), ("sd2", 32, 30)]


@pytest.mark.parametrize("variant", [v.key for v in pixels.VARIANTS])
def test_decoder_returns_the_reference_decoders_bits(reference: ModuleType, photo: np.ndarray,
                                                     variant: str) -> None:
    """Bit for bit what imwatermark's own dwtDct decoder reads, marked or not."""
    v = _variant(variant)
    for w in pixels.WATERMARKS:
        for rgb in (photo, _mark(reference, photo, w.bits, v)):
            handed = np.ascontiguousarray(rgb if v.swapped else rgb[:, :, ::-1],
                                          dtype=np.float32 if v.floating else np.uint8)
            theirs = reference.EmbedMaxDct([], wmLen=len(w.bits), scales=[0, 36, 36],
                                           block=4).decode(handed)
            ours = pixels.decode_bits(rgb, len(w.bits), v)
            assert ours is not None
            if v.floating:  # OpenCV's float YUV may differ from numpy's in the last ulp
                assert (ours != theirs).sum() <= 1
            else:
                assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("key,variant", [
    ("sdxl", "bgr-f32"),  # Stability generative-models: float BGR
    ("sdxl", "rgb-f32"),  # diffusers' StableDiffusionXLWatermarker: float RGB
    ("sd1", "bgr-u8"),    # SD 1.x scripts/txt2img.py: uint8 BGR, bytes 'StableDiffusionV1'
])
def test_watermarked_png_is_ai_generated(tmp_path: Path, reference: ModuleType,
                                         photo: np.ndarray, key: str, variant: str) -> None:
    w = _watermark(key)
    path = tmp_path / f"{key}.png"
    Image.fromarray(_mark(reference, photo, w.bits, _variant(variant))).save(path)
    found = pixels.detect(path)
    assert [(s.kind, s.marker, s.tag) for s in found] == [
        ("ai_generated", f"pixels-watermark-{key}", "Pixels:DwtDctWatermark")]
    agree = int(found[0].value.split("/")[0])
    assert agree >= w.strong
    assert "bits agree" in found[0].value and "chance on an unmarked image" in found[0].value


def test_sd2_watermark_is_at_least_possible(tmp_path: Path, reference: ModuleType,
                                            photo: np.ndarray) -> None:
    """32 bits are few: all 32 must agree for ai_generated, 30 give ai_possible."""
    w = _watermark("sd2")
    path = tmp_path / "sd2.png"
    Image.fromarray(_mark(reference, photo, w.bits, _variant("bgr-u8"))).save(path)
    found = pixels.detect(path)
    assert [s.marker for s in found] == ["pixels-watermark-sd2"]
    assert found[0].kind in ("ai_generated", "ai_possible")


def test_watermark_in_a_stealth_image_gives_both(tmp_path: Path, reference: ModuleType,
                                                 photo: np.ndarray) -> None:
    marked = _mark(reference, photo, _watermark("sdxl").bits, _variant("bgr-f32"))
    alpha = _embed_column_major(np.full(marked.shape[:2], 255, np.uint8),
                                _stealth_bits(PARAMS, "stealth_pngcomp", True))
    path = tmp_path / "both.png"
    Image.fromarray(np.dstack([marked, alpha]), "RGBA").save(path)
    assert [s.marker for s in pixels.detect(path)] == ["pixels-stealth-pnginfo",
                                                       "pixels-watermark-sdxl"]


# --------------------------------------------------------------------- clean and hostile


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_clean_photo_gives_nothing(tmp_path: Path, photo: np.ndarray, fmt: str) -> None:
    path = tmp_path / f"clean.{fmt.lower()}"
    Image.fromarray(photo).save(path, fmt)
    assert pixels.detect(path) == []
    readings = pixels.read_watermarks(np.asarray(Image.open(path).convert("RGB")))
    assert all(r.kind is None for r in readings) and len(readings) == 3


@pytest.mark.parametrize("pattern", ["black", "grey", "gradient", "noise", "stripes"])
def test_synthetic_frames_give_nothing(tmp_path: Path, pattern: str) -> None:
    """Flat and structured frames (slates, black, test patterns) decode as runs or noise."""
    h, w = 720, 1280
    y, x = np.mgrid[0:h, 0:w]
    frame = {
        "black": np.zeros((h, w, 3), np.uint8),
        "grey": np.full((h, w, 3), 128, np.uint8),
        "gradient": np.dstack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)]),
        "noise": np.random.default_rng(5).integers(0, 256, (h, w, 3)),
        "stripes": np.dstack([(x // 8 % 2) * 255, (y // 8 % 2) * 255, (x // 16 % 2) * 255]),
    }[pattern].astype(np.uint8)
    alpha = np.full((h, w), 255, np.uint8)
    path = tmp_path / f"{pattern}.png"
    Image.fromarray(np.dstack([frame, alpha]), "RGBA").save(path)
    assert pixels.detect(path) == []


def test_sample_media_images_give_nothing() -> None:
    for path in sorted((ROOT / "sample_media").iterdir()):
        if path.is_file():
            try:
                assert pixels.detect(path) == [], path.name
            except pixels.PixelError:
                pass  # the corrupt samples: refused with a message, never a crash


def _png(width: int, height: int, idat: bytes, color_type: int = 2) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("width,height", [(100_000, 100_000), (10_000, 5_000)])
def test_huge_dimensions_are_refused_before_decoding(tmp_path: Path, width: int,
                                                     height: int) -> None:
    """A few hundred bytes claiming 10 gigapixels (Pillow's own bomb check) or 50 MP (over
    the detector's cap): refused from the header, in milliseconds."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(width, height, zlib.compress(b"\0" * 4096, 9)))
    t0 = time.monotonic()
    with pytest.raises(pixels.PixelRefused) as err:
        pixels.detect(path)
    assert time.monotonic() - t0 < 1
    assert "MP limit" in str(err.value) or "decompression bomb" in str(err.value)


def test_a_real_decompression_bomb_is_refused_by_the_cap(tmp_path: Path) -> None:
    """A 60 MP PNG of zeros that really decodes: 130 KB on disk, 180 MB of pixels."""
    width = height = 7746
    raw = zlib.compressobj(9)
    row = b"\0" + b"\0" * (width * 3)
    idat = b"".join(raw.compress(row) for _ in range(height)) + raw.flush()
    path = tmp_path / "zeros.png"
    path.write_bytes(_png(width, height, idat))
    assert path.stat().st_size < 1_000_000
    t0 = time.monotonic()
    with pytest.raises(pixels.PixelRefused, match="MP limit"):
        pixels.detect(path)
    assert time.monotonic() - t0 < 1
    # under a lower cap, a real image over it is refused just the same
    small = tmp_path / "small.png"
    Image.new("RGB", (1200, 1000)).save(small)
    with pytest.raises(pixels.PixelRefused, match="1 MP limit"):
        pixels.detect(small, pixels.PixelLimits(max_pixels=1_000_000))


def test_truncated_and_corrupt_images_raise_a_pixel_error(tmp_path: Path,
                                                          photo: np.ndarray) -> None:
    full = tmp_path / "full.png"
    Image.fromarray(photo).save(full)
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(pixels.PixelError, match="do not decode"):
        pixels.detect(cut)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(_png(640, 480, b"not zlib at all" * 10))
    with pytest.raises(pixels.PixelError):
        pixels.detect(garbage)


def test_files_that_are_not_images_give_nothing(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("Steps: 20, Sampler: Euler\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path in (text, empty, ROOT / "sample_media" / "ai_voice.wav"):
        assert pixels.detect(path) == []


def test_links_and_oversized_files_are_refused(tmp_path: Path, photo: np.ndarray) -> None:
    real = tmp_path / "real.png"
    Image.fromarray(photo[:300, :300]).save(real)
    link = tmp_path / "link.png"
    link.symlink_to(real)
    with pytest.raises(pixels.PixelRefused, match="cannot open"):
        pixels.detect(link)
    with pytest.raises(pixels.PixelRefused, match="byte limit"):
        pixels.detect(real, pixels.PixelLimits(max_file_bytes=1000))
    with pytest.raises(pixels.PixelRefused, match="not a regular file"):
        pixels.detect(tmp_path)


def test_deadline_is_enforced(tmp_path: Path, photo: np.ndarray) -> None:
    path = tmp_path / "frame.png"
    Image.fromarray(photo).save(path)
    with pytest.raises(pixels.PixelDeadline):
        pixels.detect(path, pixels.PixelLimits(deadline_s=1e-9))


def test_readers_can_be_switched_off(tmp_path: Path, reference: ModuleType,
                                     photo: np.ndarray) -> None:
    marked = _mark(reference, photo, _watermark("sdxl").bits, _variant("bgr-f32"))
    path = tmp_path / "marked.png"
    Image.fromarray(marked).save(path)
    assert pixels.detect(path, pixels.PixelLimits(watermark=False)) == []
    assert len(pixels.detect(path, pixels.PixelLimits(stealth=False))) == 1


def test_limits_from_settings() -> None:
    limits = pixels.PixelLimits.from_settings(
        {"enabled": True, "max_pixels": 10_000_000, "deadline_s": 5, "formats": ["png", "webp"],
         "watermark": False})
    assert limits.max_pixels == 10_000_000 and limits.deadline_s == 5
    assert limits.formats == ("PNG", "WEBP") and limits.watermark is False
    assert pixels.PixelLimits.from_settings(None) == pixels.DEFAULT_LIMITS
    for bad in ({"max_pixel": 5}, {"max_pixels": -1}, {"max_pixels": True},
                {"formats": ["exr"]}, {"stealth": "yes"}):
        with pytest.raises(ConfigError, match="detectors.pixels."):
            pixels.PixelLimits.from_settings(bad)


def test_available() -> None:
    assert pixels.available() is None


@pytest.mark.parametrize("mode", ["P", "L", "LA", "I;16", "CMYK", "1"])
def test_other_modes_are_read_or_skipped_without_error(tmp_path: Path, photo: np.ndarray,
                                                       mode: str) -> None:
    """Palette with transparency, grey, 16-bit, CMYK, bilevel: no crash, no warning, no
    evidence from a clean frame."""
    im = Image.fromarray(photo[:300, :400]).convert(mode)
    path = tmp_path / ("frame.tiff" if mode == "CMYK" else "frame.png")
    if mode == "P":
        im.save(path, transparency=bytes(range(256)))
    else:
        im.save(path)
    assert pixels.detect(path) == []


# ---------------------------------------------------------------------------- as a plugin


def test_the_gate_reads_pixels_when_the_policy_turns_them_on(tmp_path: Path,
                                                             photo: np.ndarray) -> None:
    """The built-in pixel detector goes through provgate_detect like any plugin: off by
    default (metadata alone says unknown), on with [detectors.pixels] enabled = true."""
    from conftest import run_json
    from provgate.policy import DEFAULT_POLICY

    final = tmp_path / "EP101" / "final"
    final.mkdir(parents=True)
    _stealth_image(photo).save(final / "key_art.png")
    assert run_json("check", final)[0]["kind"] == "unknown"
    policy = tmp_path / "policy.toml"
    policy.write_text(DEFAULT_POLICY.read_text() + "\n[detectors.pixels]\nenabled = true\n")
    rec = run_json("check", final, "--policy", policy)[0]  # turning it on voids the cache
    assert rec["kind"] == "ai_generated" and rec["action"] == "block"
    assert rec["evidence"][0]["tag"] == "Pixels:StealthAlphaLSB"
    policy.write_text(DEFAULT_POLICY.read_text() + "\n[detectors.pixels]\nmax_pixel = 5\n")
    from conftest import run
    bad = run("check", final, "--policy", policy)
    assert bad.exit_code == 2 and "detectors.pixels.max_pixel" in bad.stderr
