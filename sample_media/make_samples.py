#!/usr/bin/env python3
"""Rebuild provgate's sample media from nothing: Pillow (with pillow-heif for HEIC), ffmpeg
and ExifTool only.

Each sample carries the marking a real generator, camera or tool writes (SIGNALS.md), and
EXPECTED.json says which kind provgate must give it. The committed files are what the tests
use; run this only to regenerate them:  python sample_media/make_samples.py
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, PngImagePlugin

HERE = Path(__file__).resolve().parent
DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"
A1111 = ("a lighthouse at dusk, volumetric fog\nNegative prompt: blurry\nSteps: 28, Sampler: "
         "DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567, Size: 64x48, Model hash: 31e35c80fc")
COMFY_PROMPT = json.dumps({"3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20}},
                           "4": {"class_type": "CheckpointLoaderSimple",
                                 "inputs": {"ckpt_name": "sdxl_base_1.0.safetensors"}}})
COMFY_WORKFLOW = json.dumps({"nodes": [{"id": 3, "type": "KSampler"}], "links": []})


def exiftool(*args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args], check=True)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def picture(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    rnd = random.Random(seed)
    img = Image.new("RGB", size)
    img.putdata([(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
                 for _ in range(size[0] * size[1])])
    return img


def png(path: Path, seed: int, text: dict[str, str]) -> None:
    info = PngImagePlugin.PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    picture(seed).save(path, pnginfo=info)


def jpeg(path: Path, seed: int, *tags: str) -> None:
    picture(seed).save(path, quality=80)
    if tags:
        exiftool(*tags, str(path))


def heic(path: Path, seed: int, *tags: str) -> None:
    """HEIC through pillow-heif (ExifTool writes HEIC metadata but cannot make an image)."""
    from pillow_heif import register_heif_opener

    register_heif_opener()
    picture(seed).save(path, quality=50)
    exiftool(*tags, str(path))


def build(out: Path) -> dict[str, str]:
    expected: dict[str, str] = {}

    def add(name: str, kind: str) -> Path:
        expected[name] = kind
        return out / name

    png(add("ai_a1111_txt2img.png", "ai_generated"), 1, {"parameters": A1111})
    png(add("ai_comfyui.png", "ai_generated"), 2, {"prompt": COMFY_PROMPT,
                                                    "workflow": COMFY_WORKFLOW})
    png(add("ai_novelai.png", "ai_generated"), 3, {"Software": "NovelAI",
                                                    "Title": "AI generated image"})
    jpeg(add("ai_iptc_generated.jpg", "ai_generated"), 4,
         f"-XMP-iptcExt:DigitalSourceType={DST}trainedAlgorithmicMedia")
    jpeg(add("ai_firefly_software.jpg", "ai_generated"), 5, "-IFD0:Software=Adobe Firefly Image 3")
    jpeg(add("ai_a1111_usercomment.jpg", "ai_generated"), 6, f"-ExifIFD:UserComment={A1111}")
    jpeg(add("ai_genfill_composite.jpg", "ai_composite"), 7, "-IFD0:Make=Canon",
         f"-XMP-iptcExt:DigitalSourceType={DST}compositeWithTrainedAlgorithmicMedia")
    picture(8).save(add("ai_composite_synthetic.tif", "ai_composite"))
    exiftool(f"-XMP-iptcExt:DigitalSourceType={DST}compositeSynthetic",
             str(out / "ai_composite_synthetic.tif"))
    picture(9).save(add("possible_composite.webp", "ai_possible"), quality=80)
    exiftool(f"-XMP-iptcExt:DigitalSourceType={DST}composite", str(out / "possible_composite.webp"))
    heic(add("ai_midjourney.heic", "ai_generated"), 17,
         f"-XMP-iptcExt:DigitalSourceType={DST}trainedAlgorithmicMedia",
         "-XMP-xmp:CreatorTool=Midjourney v6")
    jpeg(add("possible_artist_ai.jpg", "ai_possible"), 10, "-IFD0:Artist=ai")
    png(add("algorithmic_procedural.png", "algorithmic"), 11, {})
    exiftool(f"-XMP-iptcExt:DigitalSourceType={DST}algorithmicMedia",
             str(out / "algorithmic_procedural.png"))
    jpeg(add("human_capture.jpg", "human"), 12, "-IFD0:Make=ARRI", "-IFD0:Model=ALEXA 35",
         f"-XMP-iptcExt:DigitalSourceType= {DST.replace('http:', 'https:')}digitalCapture")
    jpeg(add("unknown_camera.jpg", "unknown"), 13, "-IFD0:Make=Canon",
         "-IFD0:Model=Canon EOS R5", "-IFD0:Software=Adobe Photoshop 25.0")
    # the substring trap: algorithmicMedia sits inside trainedAlgorithmicMedia
    jpeg(add("trap_substring.jpg", "algorithmic"), 14,
         f"-XMP-iptcExt:DigitalSourceType={DST}algorithmicMedia")

    ffmpeg("-f", "lavfi", "-i", "color=c=0x204060:s=64x36:d=0.5", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-fflags", "+bitexact", str(add("ai_runway_clip.mp4",
                                                                   "ai_generated")))
    exiftool(f"-XMP-iptcExt:DigitalSourceType={DST}trainedAlgorithmicMedia",
             "-XMP-xmp:CreatorTool=Runway Gen-3 Alpha", str(out / "ai_runway_clip.mp4"))
    ffmpeg("-f", "lavfi", "-i", "color=c=0x406020:s=64x36:d=0.5", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-fflags", "+bitexact", "-movflags", "use_metadata_tags",
           "-metadata", f"prompt={COMFY_PROMPT}", "-metadata", f"workflow={COMFY_WORKFLOW}",
           str(add("ai_comfyui_video.mov", "ai_generated")))
    ffmpeg("-f", "lavfi", "-i", "color=c=0x602040:s=64x36:d=0.5", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-fflags", "+bitexact", str(add("unknown_plate.mov", "unknown")))
    # an XMP sidecar beside a clip counts as the clip's metadata
    ffmpeg("-f", "lavfi", "-i", "color=c=0x202020:s=64x36:d=0.5", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-fflags", "+bitexact", str(add("sidecar_clip.mov",
                                                                   "ai_generated")))
    exiftool("-o", str(out / "sidecar_clip.mov.xmp"),
             f"-XMP-iptcExt:DigitalSourceType={DST}trainedAlgorithmicMedia")
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", "-fflags", "+bitexact",
           "-metadata", "ISFT=ElevenLabs Multilingual v2", "-metadata",
           "comment=text-to-speech temp voice", str(add("ai_voice.wav", "ai_generated")))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=330:duration=0.5", "-fflags", "+bitexact",
           "-metadata", "encoded_by=Suno v4.5", str(add("ai_music.mp3", "ai_generated")))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=220:duration=0.5", "-fflags", "+bitexact",
           str(add("unknown_room_tone.wav", "unknown")))
    picture(15).save(add("ai_storyboard.pdf", "ai_generated"))
    exiftool("-PDF:Creator=Midjourney v6 export", str(out / "ai_storyboard.pdf"))
    rnd = random.Random(16)
    add("unreadable_corrupt.jpg", "unreadable").write_bytes(
        bytes(rnd.randrange(256) for _ in range(2048)))
    add("unreadable_empty.png", "unreadable").write_bytes(b"")
    return expected


def main() -> int:
    for tool in ("exiftool", "ffmpeg"):
        if not shutil.which(tool):
            print(f"make_samples: {tool} is needed to rebuild the samples", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        expected = build(out)
        for old in HERE.iterdir():
            if old.name in expected or old.suffix == ".xmp":
                old.unlink()
        for f in out.iterdir():
            shutil.copy2(f, HERE / f.name)
    (HERE / "EXPECTED.json").write_text(json.dumps(dict(sorted(expected.items())), indent=2) + "\n")
    print(f"make_samples: wrote {len(expected)} samples and EXPECTED.json to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
