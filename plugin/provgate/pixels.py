"""Pixel evidence: what an image's pixels still say when its metadata is gone.

Two readers, both for images no metadata reader sees into:

* **Stealth parameters.** The A1111 "stealth pnginfo" extension (and NovelAI and ComfyUI nodes
  that share its format) hides the generation parameters in the least significant bits of the
  pixels: a 15-byte signature (``stealth_pnginfo`` or ``stealth_pngcomp`` in the alpha channel,
  one bit per pixel; ``stealth_rgbinfo`` or ``stealth_rgbcomp`` in red, green and blue, three
  bits per pixel), a 32-bit big-endian count of payload *bits*, then the payload (UTF-8, gzip for
  the ``comp`` signatures). Pixels are read column by column (x outer, y inner), so the signature
  sits in the first column. A 120-bit signature never appears by chance: a decoded payload is
  ``ai_generated`` evidence with the text, bounded, as its value.
* **The DWT-DCT watermark** of the Stable Diffusion reference pipelines, embedded with the
  ``invisible-watermark`` package (``imwatermark``, method ``dwtDct``): SD 1.x scripts mark the
  bytes ``StableDiffusionV1``, SD 2.x scripts ``SDV2``, SDXL (Stability's generative-models and
  diffusers) the 48 bits ``WATERMARK_BITS``. Only those fixed messages are looked for, and the
  evidence reports how many of their bits agree and how likely that agreement is by chance.

The watermark decoder is a vectorised numpy port of ``imwatermark.maxDct.EmbedMaxDct.decode``
(YUV conversion as OpenCV does it for 8-bit images, one-level Haar DWT of U, 4x4 blocks, the
parity of the largest non-DC coefficient against the quantisation step 36); the tests check
that it returns the very bits the package returns. The package itself is not imported at run
time: it imports torch at import time and its decoder loops in Python (seconds per 8K frame).

A pixel finding is evidence, not a declaration: it never outranks a signed C2PA manifest or an
explicit digital source type (that precedence belongs to verdict assembly). A missing watermark
or stealth block says nothing: most generators write neither and any re-encode removes both.

Everything is bounded: the file is opened without following links and must be a regular file
under ``max_file_bytes``; its dimensions are read from the header and an image over
``max_pixels`` is refused before a pixel is decoded (Pillow's decompression-bomb check is a
second fence); only the listed formats' decoders are used; the stealth payload and its gunzipped
text are capped; the analysis reads the decoded image in row strips (no second full copy)
against a deadline. The one step a deadline cannot interrupt is Pillow's decode itself, which
the pixel cap bounds (about 1 s for an 8K frame here). Pixels are read as stored: no EXIF
rotation, since the marks live in the stored grid.
"""

from __future__ import annotations

import math
import os
import stat
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from provgate.errors import ConfigError, ProvgateError
from provgate.signals import Signal

if TYPE_CHECKING:
    import numpy as np

SOURCE = "pixels"

# formats whose decoders this detector uses; stealth bits survive only lossless storage
FORMATS = ("PNG", "WEBP", "JPEG", "TIFF", "BMP")
LOSSLESS = frozenset({"PNG", "WEBP", "TIFF", "BMP"})


# --------------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class PixelLimits:
    """How much one file may cost. ``from_settings`` builds one from a policy table."""

    max_pixels: int = 40_000_000          # 8K DCI (8192 x 4320 = 35.4 MP) fits
    max_file_bytes: int = 512 * 1024 * 1024
    deadline_s: float = 15.0              # the whole file: open, decode, both readers
    max_payload_bytes: int = 1024 * 1024  # a stealth payload as stored in the pixels
    max_text_bytes: int = 256 * 1024      # the payload's text after gunzip
    value_chars: int = 2000               # evidence keeps this much of the decoded text
    formats: tuple[str, ...] = FORMATS
    stealth: bool = True
    watermark: bool = True

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> PixelLimits:
        """Limits from a settings table (e.g. the policy's ``[detectors.pixels]``); an unknown
        key or a value of the wrong type is a ConfigError naming the key."""
        if not settings:
            return cls()
        known = sorted(f.name for f in fields(cls))
        defaults = cls()
        values: dict[str, Any] = {}
        for key, value in settings.items():
            if key == "enabled":  # the policy's switch, not a limit
                continue
            if key not in known:
                raise ConfigError(f"detectors.pixels.{key}: unknown setting "
                                  f"(known: enabled, {', '.join(known)})")
            default = getattr(defaults, key)
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
            elif isinstance(default, float):
                ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
                value = float(value) if ok else value
            else:
                ok = (isinstance(value, list | tuple) and bool(value)
                      and all(isinstance(v, str) and v.upper() in FORMATS for v in value))
                value = tuple(v.upper() for v in value) if ok else value
            if not ok:
                raise ConfigError(f"detectors.pixels.{key}: {value!r} is not a valid value")
            values[key] = value
        return cls(**values)


DEFAULT_LIMITS = PixelLimits()


class PixelError(ProvgateError):
    """The pixels could not be judged; the message says why. ``partial`` holds what was found
    before the problem (a stealth block read before a watermark pass ran out of time)."""

    def __init__(self, message: str, partial: tuple[Signal, ...] = ()) -> None:
        super().__init__(message)
        self.partial = partial


class PixelRefused(PixelError):
    """Refused without decoding: too large, a decompression bomb, not a regular file."""


class PixelDeadline(PixelError):
    """The file ran past ``PixelLimits.deadline_s``."""


class PixelUnavailable(PixelError):
    """numpy or Pillow is missing: install ``provgate[pixels]``."""


def available() -> str | None:
    """None when the detector can run, else what is missing."""
    try:
        _deps()
    except PixelUnavailable as exc:
        return str(exc)
    return None


def _deps() -> tuple[Any, Any]:
    try:
        import numpy
        from PIL import Image
    except ImportError as exc:
        raise PixelUnavailable(f"pixel evidence needs numpy and Pillow ({exc.name} is missing): "
                               "pip install 'provgate[pixels]'") from exc
    return numpy, Image


class _Grid:
    """Pixels read a region at a time: an array, or a decoded Pillow image cropped strip by
    strip, so that a large frame is never held twice (Pillow's copy and numpy's)."""

    def __init__(self, src: Any) -> None:
        self.np, _ = _deps()
        self.src = src
        if isinstance(src, self.np.ndarray):
            self.height, self.width = src.shape[:2]
            self.channels = src.shape[2] if src.ndim == 3 else 1
            self.ok = src.ndim == 3 and src.dtype == self.np.uint8
        else:
            self.width, self.height = src.size
            self.channels = len(src.getbands())
            self.ok = src.mode in ("RGB", "RGBA")

    def region(self, top: int, bottom: int, right: int) -> np.ndarray:
        """Rows ``top:bottom`` of columns ``0:right``, as (rows, columns, channels)."""
        if isinstance(self.src, self.np.ndarray):
            return self.src[top:bottom, :right]
        return self.np.asarray(self.src.crop((0, top, right, bottom)))


# --------------------------------------------------------------------------------- stealth

STEALTH_MAGIC = {  # signature -> (channel, gzip)
    b"stealth_pnginfo": ("alpha", False),
    b"stealth_pngcomp": ("alpha", True),
    b"stealth_rgbinfo": ("rgb", False),
    b"stealth_rgbcomp": ("rgb", True),
}
_MAGIC_BITS = 15 * 8
_HEADER_BITS = _MAGIC_BITS + 32


@dataclass(frozen=True)
class StealthBlock:
    """A stealth signature found in the pixels and what its payload decoded to."""

    channel: str           # "alpha" | "rgb"
    signature: str
    compressed: bool
    payload_bytes: int
    text: str | None       # None: the payload could not be decoded (``problem`` says why)
    truncated: bool = False
    problem: str | None = None


def _lsb_stream(grid: _Grid, channel: str, nbits: int) -> np.ndarray:
    """The first ``nbits`` least significant bits, pixels taken column by column (x outer,
    y inner), alpha alone or red, green, blue in turn; only the columns needed are read."""
    per_px = 1 if channel == "alpha" else 3
    cols = min(grid.width, -(-nbits // (per_px * grid.height)))
    block = grid.region(0, grid.height, cols)
    # x outer, y inner: the transposed array in C order
    if channel == "alpha":
        seq = block[:, :, 3].T.ravel()
    else:
        seq = block[:, :, :3].transpose(1, 0, 2).ravel()
    return seq[:nbits] & 1


def _read_stealth(grid: _Grid, limits: PixelLimits) -> StealthBlock | None:
    np = grid.np
    if not grid.ok or grid.channels < 3:
        return None
    capacity_px = grid.height * grid.width
    for channel in (("alpha", "rgb") if grid.channels >= 4 else ("rgb",)):
        capacity = capacity_px * (1 if channel == "alpha" else 3)
        if capacity < _HEADER_BITS:
            continue
        head = _lsb_stream(grid, channel, _HEADER_BITS)
        magic = np.packbits(head[:_MAGIC_BITS]).tobytes()
        spec = STEALTH_MAGIC.get(magic)
        if spec is None or spec[0] != channel:
            continue
        compressed = spec[1]
        nbits = int.from_bytes(np.packbits(head[_MAGIC_BITS:]).tobytes(), "big")
        sig = magic.decode("ascii")
        if nbits == 0:
            return StealthBlock(channel, sig, compressed, 0, None,
                                problem="the signature declares an empty payload")
        if nbits > capacity - _HEADER_BITS:
            return StealthBlock(channel, sig, compressed, nbits // 8, None,
                                problem=f"declared payload of {nbits} bits does not fit the "
                                        f"image ({capacity - _HEADER_BITS} bits left)")
        if nbits > limits.max_payload_bytes * 8:
            return StealthBlock(channel, sig, compressed, nbits // 8, None,
                                problem=f"declared payload of {nbits // 8} bytes is over the "
                                        f"{limits.max_payload_bytes}-byte limit: not read")
        bits = _lsb_stream(grid, channel, _HEADER_BITS + nbits)[_HEADER_BITS:]
        payload = np.packbits(bits).tobytes()
        return _decode_payload(channel, sig, compressed, payload, limits)
    return None


def _decode_payload(channel: str, sig: str, compressed: bool, payload: bytes,
                    limits: PixelLimits) -> StealthBlock:
    truncated = False
    raw = payload
    if compressed:
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing
            raw = inflater.decompress(payload, limits.max_text_bytes)
            truncated = bool(inflater.unconsumed_tail) or not inflater.eof
            if not truncated and not raw:
                raise zlib.error("empty stream")
        except zlib.error as exc:
            return StealthBlock(channel, sig, compressed, len(payload), None,
                                problem=f"gzip payload does not inflate: {exc}")
    elif len(raw) > limits.max_text_bytes:
        raw, truncated = raw[:limits.max_text_bytes], True
    text = raw.decode("utf-8", errors="replace")
    if truncated:  # a cut may split a character: drop the replacement it left
        text = text.rstrip("\ufffd")
    printable = sum(ch.isprintable() or ch in "\n\r\t" for ch in text)
    if not text.strip() or printable < 0.9 * len(text):
        return StealthBlock(channel, sig, compressed, len(payload), None, truncated,
                            problem="payload is not text")
    return StealthBlock(channel, sig, compressed, len(payload), text, truncated)


def _looks_like(text: str) -> str:
    """What a decoded stealth text is, for the evidence's meaning."""
    head = text[:65536]
    if "Steps:" in head and ("Sampler:" in head or "Seed:" in head or "CFG scale:" in head):
        return "an A1111-style parameter block"
    stripped = head.lstrip()
    if stripped.startswith("{") and any(k in head for k in ('"prompt"', '"steps"', '"seed"',
                                                             '"Comment"', '"sampler"')):
        return "generation settings as JSON"
    return "text in the stealth format"


def _bounded(text: str, limit: int) -> str:
    """Head and tail of a long text (the A1111 block ends with its Steps: line)."""
    if len(text) <= limit:
        return text
    note = f" ... [{len(text)} chars] ... "
    keep = max(limit - len(note), 20)
    head = keep * 2 // 3
    return text[:head] + note + text[len(text) - (keep - head):]


def stealth_signal(block: StealthBlock, limits: PixelLimits = DEFAULT_LIMITS) -> Signal:
    """The evidence a stealth block gives."""
    where = ("the alpha channel's least significant bits" if block.channel == "alpha"
             else "the red, green and blue least significant bits")
    fmt = f"signature {block.signature}, {'gzip, ' if block.compressed else ''}" \
          f"{block.payload_bytes} bytes"
    tag = "Pixels:StealthAlphaLSB" if block.channel == "alpha" else "Pixels:StealthRGBLSB"
    if block.text is None:
        return Signal("ai_possible",
                      f"stealth pnginfo signature (A1111/NovelAI generation-parameter format) in "
                      f"{where} ({fmt}), but its payload could not be read: {block.problem}",
                      SOURCE, tag, block.problem or "", "pixels-stealth-unreadable")
    cut = " (cut at the size limit)" if block.truncated else ""
    return Signal("ai_generated",
                  f"generation parameters hidden in {where} by the A1111 stealth pnginfo "
                  f"format ({fmt}): {_looks_like(block.text)}{cut}",
                  SOURCE, tag, _bounded(block.text, limits.value_chars), "pixels-stealth-pnginfo")


# ------------------------------------------------------------------------------- watermark

_SDXL_MESSAGE = 0b101100111110110010010000011110111011000110011110


def _bytes_bits(text: bytes) -> tuple[int, ...]:
    return tuple((byte >> (7 - i)) & 1 for byte in text for i in range(8))


# A family of tries: every message is read in every variant, so the thresholds below are set
# for the chance of any one of them matching an unmarked image (Bonferroni).
FAMILY_P_STRONG = 1e-8   # ai_generated
FAMILY_P_WEAK = 1e-5     # ai_possible
# natural images bias the decoded bits (flat areas decode as runs of one value), so the coin
# model is optimistic for long messages: never accept fewer agreeing bits than these fractions
FLOOR_STRONG = 0.85
FLOOR_WEAK = 0.75


@dataclass(frozen=True)
class Watermark:
    """A fixed message a reference pipeline embeds, and how many agreeing bits decide."""

    key: str
    name: str
    where: str
    bits: tuple[int, ...]
    strong: int = 0   # filled in by _thresholds
    weak: int = 0


@dataclass(frozen=True)
class Variant:
    """How a pipeline handed its pixels to imwatermark: channel order and sample type."""

    key: str
    swapped: bool   # the pipeline passed RGB where imwatermark expects BGR
    floating: bool  # float32 0..255 (OpenCV's float YUV has U offset 0.5, not 128)
    who: str


VARIANTS = (
    Variant("bgr-u8", False, False, "SD 1.x/2.x reference scripts (uint8, BGR)"),
    Variant("bgr-f32", False, True, "Stability generative-models SDXL (float, BGR)"),
    Variant("rgb-f32", True, True, "diffusers SDXL watermarker (float, RGB as BGR)"),
    Variant("rgb-u8", True, False, "a front-end passing uint8 RGB as BGR"),
)


def _tail(n: int, k: int) -> float:
    """P(at least k of n fair coin flips agree): the chance an unmarked image matches."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n


def _thresholds(w: Watermark, tries: int) -> Watermark:
    def first(family_p: float, floor: float) -> int:
        n = len(w.bits)
        k = next((k for k in range(n + 1) if _tail(n, k) * tries <= family_p), n + 1)
        return max(k, math.ceil(floor * n))
    return Watermark(w.key, w.name, w.where, w.bits, first(FAMILY_P_STRONG, FLOOR_STRONG),
                     first(FAMILY_P_WEAK, FLOOR_WEAK))


_MESSAGES = (
    Watermark("sdxl", "SDXL WATERMARK_BITS",
              "Stable Diffusion XL (Stability generative-models, diffusers)",
              tuple(int(b) for b in bin(_SDXL_MESSAGE)[2:])),
    Watermark("sd1", "bytes 'StableDiffusionV1'", "Stable Diffusion 1.x reference scripts",
              _bytes_bits(b"StableDiffusionV1")),
    Watermark("sd2", "bytes 'SDV2'", "Stable Diffusion 2.x reference scripts",
              _bytes_bits(b"SDV2")),
)
WATERMARKS = tuple(_thresholds(w, len(_MESSAGES) * len(VARIANTS)) for w in _MESSAGES)

_SCALE = 36.0    # imwatermark dwtDct: scales [0, 36, 36], only channel 1 (U) is read
_BLOCK = 4       # 4x4 blocks of the DWT approximation = 8x8 pixels
_MIN_PIXELS = 256 * 256  # imwatermark refuses smaller images; SDXL pipelines skip them
_STRIP = 64      # pixel rows per analysis strip (a multiple of 8)
_H = 0.7071067811865476  # Haar filter tap, as PyWavelets applies it


@dataclass(frozen=True)
class WatermarkReading:
    """One message read from the pixels in the variant that agreed best."""

    watermark: Watermark
    variant: Variant
    agree: int

    @property
    def total(self) -> int:
        return len(self.watermark.bits)

    @property
    def agreement(self) -> float:
        return self.agree / self.total

    @property
    def chance(self) -> float:
        """The chance of this agreement or better on an unmarked image, over all tries."""
        return min(1.0, _tail(self.total, self.agree) * len(VARIANTS) * len(WATERMARKS))

    @property
    def kind(self) -> str | None:
        if self.agree >= self.watermark.strong:
            return "ai_generated"
        if self.agree >= self.watermark.weak:
            return "ai_possible"
        return None


def _u_plane(np: Any, planes: np.ndarray, variant: Variant) -> np.ndarray:
    """OpenCV's U of BGR2YUV on what the pipeline handed imwatermark. ``planes`` holds the
    strip's red, green and blue as contiguous planes, int32 for the 8-bit variants, float32
    for the float ones."""
    r, g, b = planes
    if variant.swapped:
        r, b = b, r
    if variant.floating:
        y = r * np.float32(0.299)
        y += g * np.float32(0.587)
        y += b * np.float32(0.114)
        u = b - y
        u *= np.float32(0.492)
        u += np.float32(0.5)
        return u
    # OpenCV's fixed point for 8-bit YUV: 14-bit coefficients, Y rounded before U; U stays
    # within 16..240 for any 8-bit input, so OpenCV's saturation never applies
    y = r * 4899
    y += g * 9617
    y += b * 1868
    y += 8192
    y >>= 14
    u = b - y
    u *= 8061
    u += (128 << 14) + 8192
    u >>= 14
    return u.astype(np.float64)


def _block_scores(np: Any, u: np.ndarray, nbc: int) -> np.ndarray:
    """imwatermark's per-block bit: one-level Haar approximation of U, 4x4 blocks, the largest
    magnitude off the block's first element, its remainder modulo the step over half a step."""
    h = np.asarray(_H, dtype=u.dtype)
    t = h * u[0::2] + h * u[1::2]            # PyWavelets: the row axis first
    ca = h * t[:, 0::2] + h * t[:, 1::2]     # then the column axis
    rows = ca.shape[0] // _BLOCK
    blocks = (ca[:rows * _BLOCK, :nbc * _BLOCK]
              .reshape(rows, _BLOCK, nbc, _BLOCK).transpose(0, 2, 1, 3)
              .reshape(rows * nbc, _BLOCK * _BLOCK))
    peak = np.abs(blocks[:, 1:]).max(axis=1)
    return np.mod(peak, _SCALE) > _SCALE / 2


def _scores(grid: _Grid, variants: tuple[Variant, ...],
            deadline: float | None) -> dict[str, np.ndarray] | None:
    """imwatermark's per-block bit for every block, row by row, in each variant; None for an
    image under 256 x 256 (imwatermark refuses it, the SDXL pipelines skip it)."""
    np = grid.np
    height, width = grid.height, grid.width
    if not grid.ok or grid.channels < 3 or height * width < _MIN_PIXELS:
        return None
    # imwatermark transforms rows//4*4 x cols//4*4; its 4x4 blocks of the half-size
    # approximation cover whole 8x8 pixel blocks
    nbr, nbc = (height // 4 * 4) // 2 // _BLOCK, (width // 4 * 4) // 2 // _BLOCK
    if nbr * nbc == 0:
        return None
    parts: dict[str, list[Any]] = {v.key: [] for v in variants}
    for top in range(0, nbr * 8, _STRIP):  # strips bound the working memory
        if deadline is not None and time.monotonic() > deadline:
            raise PixelDeadline(f"watermark reading ran past its deadline at row {top} "
                                f"of {height}")
        strip = grid.region(top, min(top + _STRIP, nbr * 8), nbc * 8)[:, :, :3]
        planes = np.moveaxis(strip, -1, 0)
        cast = {False: planes.astype(np.int32), True: planes.astype(np.float32)}
        for v in variants:
            parts[v.key].append(_block_scores(np, _u_plane(np, cast[v.floating], v), nbc))
    return {key: np.concatenate(p) for key, p in parts.items()}


def _bits(np: Any, scores: np.ndarray, length: int) -> np.ndarray:
    """The message bits: block i votes for bit i mod length; a bit is 1 when its mean vote
    times 255 is over 127, as imwatermark decides."""
    slot = np.arange(scores.size) % length
    votes = np.bincount(slot, minlength=length)
    ones = np.bincount(slot, weights=scores, minlength=length)
    return ones * 255 > votes * 127


def decode_bits(rgb: np.ndarray, length: int, variant: Variant = VARIANTS[0]) -> np.ndarray | None:
    """The ``length`` bits imwatermark's dwtDct decoder reads from an 8-bit RGB array in one
    variant (None under 256 x 256): what ``WatermarkDecoder('bits', length).decode(...)``
    returns for the same pixels handed over the way ``variant`` says."""
    grid = _Grid(rgb)
    scores = _scores(grid, (variant,), None)
    return None if scores is None else _bits(grid.np, scores[variant.key], length)


def read_watermarks(rgb: np.ndarray, deadline: float | None = None,
                    variants: tuple[Variant, ...] = VARIANTS) -> list[WatermarkReading]:
    """Every known message read from an 8-bit RGB array (height, width, 3+), each in the
    variant that agrees best; an empty list under 256 x 256."""
    return _read_watermarks(_Grid(rgb), deadline, variants)


def _read_watermarks(grid: _Grid, deadline: float | None,
                     variants: tuple[Variant, ...] = VARIANTS) -> list[WatermarkReading]:
    np = grid.np
    scores = _scores(grid, variants, deadline)
    if scores is None:
        return []
    readings = []
    for w in WATERMARKS:
        want = np.asarray(w.bits, dtype=bool)
        best = max((WatermarkReading(w, v, int((_bits(np, scores[v.key], len(w.bits))
                                                  == want).sum())) for v in variants),
                   key=lambda r: r.agree)
        readings.append(best)
    return readings


def watermark_signal(reading: WatermarkReading) -> Signal | None:
    """The evidence a reading gives, or None when it is not close enough to say anything."""
    kind = reading.kind
    if kind is None:
        return None
    w = reading.watermark
    strength = ("decoded" if kind == "ai_generated"
                else "partly decoded (damaged, or a chance match)")
    return Signal(
        kind,
        f"invisible watermark of {w.where} {strength}: imwatermark dwtDct, message {w.name}; "
        f"{reading.agree} of {reading.total} bits agree (ai_generated from {w.strong}, "
        f"ai_possible from {w.weak})",
        SOURCE, "Pixels:DwtDctWatermark",
        f"{reading.agree}/{reading.total} bits agree ({reading.agreement:.1%}); read as "
        f"{reading.variant.who}; chance on an unmarked image <= {reading.chance:.1e}",
        f"pixels-watermark-{w.key}")


# ---------------------------------------------------------------------------------- detect


def detect(path: str | os.PathLike[str], limits: PixelLimits = DEFAULT_LIMITS) -> list[Signal]:
    """Pixel evidence for one file: a list of Signals (source ``pixels``), empty when the file
    is not an image this detector reads or its pixels say nothing.

    Raises PixelRefused (over a limit, a bomb, a link), PixelDeadline (past
    ``limits.deadline_s``), PixelError (an image of a listed format that does not decode) or
    PixelUnavailable (numpy or Pillow missing)."""
    _, Image = _deps()
    deadline = time.monotonic() + limits.deadline_s
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise PixelRefused(f"cannot open {name}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PixelRefused(f"{name}: not a regular file")
        if info.st_size > limits.max_file_bytes:
            raise PixelRefused(f"{name}: {info.st_size} bytes, over the "
                               f"{limits.max_file_bytes}-byte limit for pixel reading")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        image, fmt = _decode(Image, f, name, limits, deadline)
    if image is None:
        return []
    with image:
        grid = _Grid(image)
        found: list[Signal] = []
        try:
            if limits.stealth and fmt in LOSSLESS:
                block = _read_stealth(grid, limits)
                if block is not None:
                    found.append(stealth_signal(block, limits))
            if limits.watermark:
                readings = _read_watermarks(grid, deadline)
                found += [s for s in map(watermark_signal, readings) if s is not None]
        except PixelDeadline as exc:
            raise PixelDeadline(f"{name}: {exc}", tuple(found)) from None
        except MemoryError:
            raise PixelRefused(f"{name}: not enough memory to read its pixels",
                               tuple(found)) from None
    return found


def _decode(Image: Any, f: Any, name: str, limits: PixelLimits,
            deadline: float) -> tuple[Any, str]:
    """The decoded image in mode RGB or RGBA (the caller closes it), or (None, format) when
    there is nothing to read (not a listed format, no colour). The dimensions are checked
    against the cap before a pixel is decoded."""
    try:
        # Pillow's own bomb check is a second fence: it refuses over twice MAX_IMAGE_PIXELS
        # (and only warns above it, where the cap below, if lower, refuses). No
        # warnings.catch_warnings here: it is not thread-safe, and detectors may run in threads
        im = Image.open(f, formats=list(limits.formats))
    except Image.UnidentifiedImageError:
        return None, ""
    except Image.DecompressionBombError as exc:
        raise PixelRefused(f"{name}: refused as a decompression bomb: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a hostile header may raise anything
        raise PixelError(f"{name}: image header unreadable: {type(exc).__name__}: {exc}") from None
    keep = False
    try:
        fmt = im.format or ""
        width, height = im.size
        if width * height > limits.max_pixels:
            raise PixelRefused(f"{name}: {width} x {height} = {width * height / 1e6:.1f} MP, "
                               f"over the {limits.max_pixels / 1e6:g} MP limit for pixel "
                               f"reading: not decoded")
        if width == 0 or height == 0:
            return None, fmt
        mode = im.mode
        if mode in ("RGB", "RGBA"):
            want = mode
        elif mode in ("LA", "La", "PA", "RGBa") or (mode == "P" and "transparency" in im.info):
            want = "RGBA"
        elif mode in ("P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
            want = "RGB"
        else:  # grey or one-channel: no colour bits, no chroma watermark
            return None, fmt
        if time.monotonic() > deadline:
            raise PixelDeadline(f"{name}: past the deadline before decoding")
        try:
            im.load()
            if mode == want:
                conv, keep = im, True
            else:  # P with transparency goes to RGBA, where Pillow gives no warning
                conv = im.convert(want)
        except MemoryError:
            raise PixelRefused(f"{name}: not enough memory to decode "
                               f"{width} x {height} pixels") from None
        except Exception as exc:  # noqa: BLE001 - truncated, corrupt or hostile data
            raise PixelError(f"{name}: pixels do not decode: {type(exc).__name__}: "
                             f"{exc}") from None
    finally:
        if not keep:
            im.close()
    if time.monotonic() > deadline:
        conv.close()
        raise PixelDeadline(f"{name}: decoding {width} x {height} pixels ran past the "
                            f"{limits.deadline_s:g} s deadline")
    return conv, fmt

