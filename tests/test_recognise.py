"""Recognition that generalises (issue 13): generation records recognised by their structure
wherever they sit, generator names in every field tools write them (weak and strong), the kind
precedence that respects declarations, ExifTool reading past -fast's stop, and bounded parsing.

Every file is made here (Pillow, ExifTool, c2pa-python, a few bytes by hand) from the project's
own samples; nothing from ../shared/realworld.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from conftest import ROOT, SAMPLES, by_name, run_json
from provgate.precedence import kind_of
from provgate.probe import Metadata, find_exiftool
from provgate.signals import DEFAULT_CATALOGUE, Catalogue, Signal
from test_redos import adversarial, watchdog

GRAPH = {"3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20, "cfg": 7,
                                                       "model": ["4", 0]}},
         "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}},
         "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}}}
WORKFLOW = {"last_node_id": 9, "last_link_id": 9,
            "nodes": [{"id": 3, "type": "KSampler", "pos": [863, 186], "mode": 0,
                       "widgets_values": [42, "fixed", 20, 7, "euler", "normal", 1]}],
            "links": [[1, 4, 0, 3, 0, "MODEL"]], "version": 0.4}
DIFFUSERS = {"prompt": "a red fox in snow", "negative_prompt": "blurry",
             "num_inference_steps": 30, "guidance_scale": 7.5, "seed": 42,
             "model_id": "stabilityai/stable-diffusion-xl-base-1.0"}
A1111 = ("a lighthouse at dusk\nNegative prompt: blurry\nSteps: 28, Sampler: DPM++ 2M, "
         "Schedule type: Karras, CFG scale: 6, Seed: 1234, Size: 832x1216, Model: juggernautXL")


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return Catalogue.load()


def markers(cat: Catalogue, tags: dict[str, Any]) -> dict[str, str]:
    """marker -> kind of every signal the catalogue finds in these tags."""
    return {s.marker: s.kind for s in cat.match(Metadata("x", tags))}


def exiftool(*args: str | Path) -> None:
    subprocess.run([find_exiftool(), "-q", "-overwrite_original", *map(str, args)], check=True,
                   timeout=60)


def png(path: Path, chunks: dict[str, str]) -> Path:
    info = PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    Image.new("RGB", (32, 32), (40, 60, 90)).save(path, pnginfo=info)
    return path


def jpeg(path: Path, ifd0: dict[int, Any] | None = None,
         exif_ifd: dict[int, Any] | None = None) -> Path:
    exif = Image.Exif()
    for tag, value in (ifd0 or {}).items():
        exif[tag] = value
    for tag, value in (exif_ifd or {}).items():
        exif.get_ifd(0x8769)[tag] = value
    Image.new("RGB", (32, 32), (90, 60, 40)).save(path, exif=exif.tobytes())
    return path


def evidence(rec: dict[str, Any], marker: str) -> dict[str, Any]:
    return next(e for e in rec["evidence"] if e["marker"] == marker)


def deciding(rec: dict[str, Any]) -> str | None:
    """The marker of the evidence a reason cites: the first of the winning kind."""
    return next((e["marker"] for e in rec["evidence"] if e["kind"] == rec["kind"]), None)


# -- records wherever they sit, in every form ------------------------------------------------

def test_records_that_markers_never_named_are_recognised(tmp_path: Path) -> None:
    """The misses the issue lists: a ComfyUI graph under another keyword and after a label,
    diffusers JSON in a UTF-16 UserComment and in IFD0, A1111 text in an XMP description, a
    tool's own XMP namespace, a MOV whose QuickTime comment names the generator."""
    d = tmp_path / "delivery"
    d.mkdir()
    png(d / "graph_other_key.png", {"generation_data": json.dumps(GRAPH)})
    png(d / "workflow_label.png", {"comfy": "Workflow: " + json.dumps(WORKFLOW)})
    png(d / "graph_escaped.png", {"meta": json.dumps(GRAPH).replace('"', '\\"')})
    # piexif writes UserComment as UNICODE + UTF-16BE (A1111, ComfyUI savers) in a II file
    jpeg(d / "diffusers_utf16.jpg",
         exif_ifd={0x9286: b"UNICODE\0" + json.dumps(DIFFUSERS).encode("utf-16-be")})
    jpeg(d / "diffusers_ifd0.jpg", ifd0={0x010E: json.dumps(DIFFUSERS)})
    shutil.copy2(SAMPLES / "unknown_camera.jpg", d / "a1111_xmp.jpg")
    exiftool(f"-XMP-dc:Description={A1111}", d / "a1111_xmp.jpg")
    shutil.copy2(SAMPLES / "unknown_camera.jpg", d / "own_namespace.jpg")
    packet = tmp_path / "ns.xmp"
    packet.write_text(
        "<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?><x:xmpmeta xmlns:x='adobe:ns:meta/'>"
        "<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'><rdf:Description "
        "rdf:about='' xmlns:aigen='http://ns.example-tool.invalid/aigen/1.0/'>"
        "<aigen:Generator>Midjourney v6.1</aigen:Generator></rdf:Description></rdf:RDF>"
        "</x:xmpmeta><?xpacket end='w'?>")
    exiftool(f"-XMP<={packet}", d / "own_namespace.jpg")
    shutil.copy2(SAMPLES / "unknown_plate.mov", d / "prores_comment.mov")
    exiftool("-UserData:Comment=Generated with Runway Gen-3 Alpha", d / "prores_comment.mov")

    recs = by_name(run_json("scan", d))
    want = {"graph_other_key.png": "comfyui-api-graph", "workflow_label.png": "comfyui-workflow",
            "graph_escaped.png": "comfyui-api-graph",
            "diffusers_utf16.jpg": "diffusion-parameters",
            "diffusers_ifd0.jpg": "diffusion-parameters", "a1111_xmp.jpg": "a1111-settings",
            "own_namespace.jpg": "generator-software",
            "prores_comment.mov": "generator-statement"}
    got = {n: (r["kind"], deciding(r)) for n, r in recs.items()}
    assert got == {n: ("ai_generated", m) for n, m in want.items()}
    assert "after the label 'Workflow:'" in evidence(recs["workflow_label.png"],
                                                     "comfyui-workflow")["meaning"]
    assert "escaped JSON" in evidence(recs["graph_escaped.png"], "comfyui-api-graph")["meaning"]
    assert evidence(recs["diffusers_ifd0.jpg"], "diffusion-parameters")["tag"] == \
        "IFD0:ImageDescription"
    assert evidence(recs["own_namespace.jpg"], "generator-software")["tag"] == \
        "XMP-aigen:Generator"
    assert evidence(recs["prores_comment.mov"], "generator-statement")["tag"] == \
        "UserData:Comment"


@pytest.mark.parametrize("form, text, how", [
    ("whole", json.dumps(GRAPH), ""),
    ("after a label", "Prompt: " + json.dumps(GRAPH), "after the label 'Prompt:'"),
    ("escaped", json.dumps(GRAPH).replace('"', '\\"'), "escaped JSON"),
    ("a JSON string", json.dumps(json.dumps(GRAPH)), "JSON in a JSON string"),
    ("nested in a string", json.dumps({"extra_pnginfo": {"prompt": json.dumps(GRAPH)}}),
     "JSON in the string at .extra_pnginfo.prompt"),
    ("inside text", "Rendered on the farm overnight, graded and conformed for the edit. "
     + json.dumps(GRAPH), "JSON inside the text"),
    ("UTF-16 read as 8-bit", json.dumps(GRAPH).encode("utf-16-le").decode("latin-1"),
     "UTF-16 text read as 8-bit"),
    ("UTF-16 byte-swapped", json.dumps(GRAPH).encode("utf-16-le").decode("utf-16-be"),
     "UTF-16 read in the wrong byte order"),
])
def test_json_is_parsed_in_every_form_it_is_written(cat: Catalogue, form: str, text: str,
                                                     how: str) -> None:
    sig = next(s for s in cat.match(Metadata("x", {"Keys:Notes": text}))
               if s.marker == "comfyui-api-graph")
    assert sig.kind == "ai_generated" and how in sig.meaning, form


@pytest.mark.parametrize("shape, record", [
    ("comfyui-workflow", WORKFLOW),
    ("invokeai-graph", {"id": "g", "nodes": {
        "a": {"id": "a", "type": "main_model_loader", "is_intermediate": True},
        "b": {"id": "b", "type": "denoise_latents", "is_intermediate": True}}, "edges": []}),
    ("invokeai-metadata", {"generation_mode": "sdxl_txt2img", "positive_prompt": "oil painting",
                           "seed": 1, "steps": 30, "cfg_scale": 7, "scheduler": "euler"}),
    ("invokeai-legacy", {"model": "stable diffusion", "model_weights": "sd-1.5",
                         "app_id": "invoke-ai/InvokeAI", "image": {"prompt": "x", "steps": 50}}),
    ("swarmui-parameters", {"sui_image_params": {"prompt": "x", "seed": 1, "steps": 20},
                            "sui_extra_data": {}}),
    ("fooocus-parameters", {"prompt": "x", "base_model": "juggernautXL", "sharpness": 2,
                            "performance": "Speed", "styles": ["Fooocus V2"]}),
    ("novelai-parameters", {"prompt": "1girl", "uc": "lowres", "steps": 28, "scale": 5,
                            "n_samples": 1, "noise_schedule": "native", "sampler": "k_euler"}),
    ("drawthings-parameters", {"c": "a castle", "uc": "", "seed": 9, "steps": 30, "scale": 7,
                               "model": "sd_xl_base"}),
    ("suno-parameters", {"gpt_description_prompt": "lofi beat", "make_instrumental": True,
                         "mv": "chirp-v4"}),
    ("speech-request", {"text": "Hello there", "voice_id": "21m00Tcm4TlvDq8ikWAM",
                        "model_id": "eleven_multilingual_v2",
                        "voice_settings": {"stability": 0.5}}),
    ("media-generation-request", {"promptText": "a drone shot over a coast",
                                  "model": "gen3a_turbo", "duration": 10, "ratio": "1280:768"}),
    ("diffusion-parameters", DIFFUSERS),
])
def test_each_shape_names_its_record_wherever_it_sits(cat: Catalogue, shape: str,
                                                       record: dict[str, Any]) -> None:
    for tag in ("PNG:Notes", "XMP-acme:Data", "ItemList:Comment", "RIFF:Comment", "OpenEXR:Info"):
        found = markers(cat, {tag: json.dumps(record)})
        assert found.get(shape) == "ai_generated", (tag, found)


@pytest.mark.parametrize("shape, text", [
    ("a1111-settings", A1111),
    ("midjourney-job", "a cat astronaut --ar 16:9 --v 6.1 --stylize 250 Job ID: "
                       "0b2c7a1e-1111-2222-3333-444455556666"),
    ("dream-command", '"a castle on a hill" -s 50 -S 2390734935 -W 512 -H 768 -C 7.5 -A k_lms'),
])
def test_text_forms(cat: Catalogue, shape: str, text: str) -> None:
    assert markers(cat, {"XMP-acme:Notes": text}).get(shape) == "ai_generated"


@pytest.mark.parametrize("text", [
    json.dumps({"prompt": "Read slowly", "duration": 120, "mode": "scroll"}),  # a teleprompter
    json.dumps({"iso": 800, "shutter": "1/50", "lens": "35mm", "model": "ILCE-7SM3"}),
    json.dumps({"nodes": [{"id": 1, "type": "grade"}], "edges": [[1, 2]]}),  # a node graph
    json.dumps({"text": "Where were you?", "voice": "narrator", "language_code": "en"}),
    json.dumps({"c": "#ff0000", "size": 12, "scale": 2, "model": "brush"}),
    "[Verse 1]\nMade with love on a Sunday afternoon\n[Chorus]",
    "Runway show at Paris Fashion Week: Sora Tanaka for Gemini Studio",
    "{{ shot }} {{ take }} placeholder template {not json}",
])
def test_ordinary_records_and_text_are_not_called_generated(cat: Catalogue, text: str) -> None:
    for tag in ("XMP-dc:Description", "PNG:Comment", "Keys:Comment", "XMP-acme:Notes"):
        assert cat.match(Metadata("x", {tag: text})) == [], (tag, text)


def test_the_tags_of_one_group_are_read_as_one_record(cat: Catalogue, tmp_path: Path) -> None:
    """Easy Diffusion writes one PNG text chunk per setting; a tool's own XMP namespace holds
    one property per setting; ID3 user text frames hold one each."""
    rec = run_json("scan", png(tmp_path / "easy.png", {
        "prompt": "a watercolour harbour", "negative_prompt": "text", "seed": "7",
        "use_stable_diffusion_model": "sd-v1-5", "num_inference_steps": "25",
        "guidance_scale": "7.5", "sampler_name": "euler_a"}))[0]
    assert rec["kind"] == "ai_generated"
    assert evidence(rec, "easydiffusion-parameters")["tag"].startswith("PNG:")
    found = markers(cat, {"XMP-aigen:Prompt": "a lighthouse", "XMP-aigen:Seed": 1234,
                          "XMP-aigen:Steps": 30, "XMP-aigen:Sampler": "euler"})
    assert found == {"diffusion-parameters": "ai_generated"}
    found = markers(cat, {"ID3v2_4:UserDefinedText": ["(prompt) lofi beat", "(seed) 4",
                                                      "(model) chirp-v4"]})
    assert found.get("diffusion-parameters") == "ai_generated"
    # keys of different groups never make a record together
    assert markers(cat, {"PNG:Prompt": "a harbour", "IFD0:Model": "EOS R5", "XMP-x:Seed": 1}) \
        == {}


def test_a_catalogue_shape_is_data(tmp_path: Path) -> None:
    """A new generator's record is a data change: keys that appear together, its name."""
    record = {"acme_prompt": "a city at night", "acme_engine": "v7", "acme_seed": 3}
    meta = Metadata("x", {"PNG:Data": json.dumps(record)})
    assert Catalogue.load().match(meta) == []
    cat_file = tmp_path / "sig.toml"
    cat_file.write_text(DEFAULT_CATALOGUE.read_text() + (
        '\n[[shapes]]\nid = "acme-gen"\nkind = "ai_generated"\ngenerator = "Acme Gen"\n'
        'meaning = "render record"\nkeys = [{ of = ["acme_prompt", "acme_engine"] }]\n'))
    sig = Catalogue.load(cat_file).match(meta)[0]
    assert (sig.marker, sig.kind, sig.meaning) == ("acme-gen", "ai_generated",
                                                    "Acme Gen: render record")


# -- generator names: weak and strong ----------------------------------------------------------

@pytest.mark.parametrize("tag, value, want", [
    # named as the making software, in any family: strong
    ("IFD0:Software", "Adobe Firefly Image 3", ("generator-software", "ai_generated")),
    ("Keys:Encoder", "Sora 2", ("generator-software", "ai_generated")),
    ("RIFF:Software", "ElevenLabs Multilingual v2", ("generator-software", "ai_generated")),
    ("XMP-xmpMM:HistorySoftwareAgent", "Kling AI 2.1", ("generator-software", "ai_generated")),
    ("MXF:ApplicationName", "Runway", ("generator-software", "ai_generated")),
    ("XMP-acme:Model", "Stable Diffusion XL 1.0", ("generator-software", "ai_generated")),
    # a text that says a generator made or edited the file: strong
    ("ItemList:Comment", "Generated with Runway Gen-3 Alpha",
     ("generator-statement", "ai_generated")),
    ("ID3v2_3:Comment", "made with suno; created=2026-02-25T03:57:12Z; id=6ec687e6",
     ("generator-statement", "ai_generated")),
    ("XMP-dc:Title", "AI-generated image", ("generator-statement", "ai_generated")),
    ("UserData:Comment", "Made in Sora", ("generator-statement", "ai_generated")),
    ("XMP-photoshop:Credit", "Made with Google AI", ("generator-statement", "ai_generated")),
    ("XMP-dc:Description", "sky replaced with Adobe Firefly",
     ("generator-edit-statement", "ai_composite")),
    # a plain mention in free text: weak
    ("XMP-dc:Description", "moodboard reference from Midjourney",
     ("generator-mentioned", "ai_possible")),
    ("PNG:Comment", "stable diffusion look-dev", ("generator-mentioned", "ai_possible")),
    # words and names that are not a generator there, and negations: nothing
    ("XMP-dc:Description", "Sora Tanaka walks the runway at the Gemini awards", None),
    ("XMP-dc:Description", "Photo created by Sora Tanaka", None),
    ("IFD0:Model", "Gemini PDA", None),
    ("XMP-dc:Description", "Not AI-generated: shot on ARRI Alexa 35", None),
    ("IFD0:Software", "Adobe Photoshop 26.9 (Macintosh)", None),
    ("ItemList:Comment", "Made with love in Lisbon", None),
    ("XMP-dc:Description", "made without AI", None),
])
def test_generator_names_weak_and_strong(cat: Catalogue, tag: str, value: str,
                                         want: tuple[str, str] | None) -> None:
    found = markers(cat, {tag: value})
    assert found == ({want[0]: want[1]} if want else {}), (tag, value)


# -- kind precedence ---------------------------------------------------------------------------

def _sig(kind: str, marker: str, tag: str, source: str = "exiftool") -> Signal:
    return Signal(kind, "test", source, tag, "v", marker)


@pytest.mark.parametrize("signals, kind", [
    # a declaration decides among the AI kinds at its level
    ([_sig("ai_composite", "digital-source-type", "active manifest: CBOR:X", "c2pa"),
      _sig("ai_generated", "generator-software", "active manifest: CBOR:Y", "c2pa")],
     "ai_composite"),
    ([_sig("ai_composite", "digital-source-type", "active manifest: CBOR:X", "c2pa"),
      _sig("ai_generated", "digital-source-type", "ingredient 'a' (parentOf): CBOR:X", "c2pa")],
     "ai_composite"),
    ([_sig("ai_possible", "digital-source-type", "XMP-iptcExt:DigitalSourceType"),
      _sig("ai_generated", "generator-software", "IFD0:Software")], "ai_composite"),
    ([_sig("ai_possible", "digital-source-type", "XMP-iptcExt:DigitalSourceType")],
     "ai_possible"),
    # without an AI declaration any AI signal outranks a human one
    ([_sig("human", "digital-source-type", "XMP-iptcExt:DigitalSourceType"),
      _sig("ai_generated", "a1111-settings", "PNG:Parameters")], "ai_generated"),
    ([_sig("ai_generated", "generator-software", "IFD0:Software"),
      _sig("ai_possible", "generator-mentioned", "XMP-dc:Description")], "ai_generated"),
    # a detector's finding never outranks a signed declaration, of whatever kind; unsigned
    # XMP competes like any signal
    ([_sig("human", "digital-source-type", "active manifest: CBOR:X", "c2pa"),
      _sig("ai_generated", "pixels-stealth-pnginfo", "Pixels:StealthAlphaLSB", "pixels")],
     "human"),
    ([_sig("human", "capture-parent", "active manifest: parent ingredient 'a'", "c2pa"),
      _sig("ai_possible", "pixels-watermark-sdxl", "Pixels:DwtDctWatermark", "pixels")],
     "human"),
    ([_sig("human", "digital-source-type", "XMP-iptcExt:DigitalSourceType"),
      _sig("ai_generated", "pixels-stealth-pnginfo", "Pixels:StealthAlphaLSB", "pixels")],
     "ai_generated"),
    ([_sig("ai_generated", "pixels-stealth-pnginfo", "Pixels:StealthAlphaLSB", "pixels")],
     "ai_generated"),
    # an unsigned tag anyone can write cannot talk a detector's finding down
    ([_sig("ai_composite", "digital-source-type", "XMP-iptcExt:DigitalSourceType"),
      _sig("ai_generated", "pixels-stealth-pnginfo", "Pixels:StealthAlphaLSB", "pixels")],
     "ai_generated"),
    ([_sig("ai_composite", "digital-source-type", "active manifest: CBOR:X", "c2pa"),
      _sig("ai_generated", "pixels-stealth-pnginfo", "Pixels:StealthAlphaLSB", "pixels")],
     "ai_composite"),
    # ExifTool's own view of a store: the last manifest is the active one
    ([_sig("ai_generated", "digital-source-type", "Doc1-1-1-1:CBOR:ActionsDigitalSourceType"),
      _sig("ai_composite", "digital-source-type", "Doc1-2-1-1:CBOR:ActionsDigitalSourceType")],
     "ai_composite"),
    ([], "unknown"),
])
def test_precedence(signals: list[Signal], kind: str) -> None:
    assert kind_of(signals) == kind


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files signed here with a throwaway CA, one per row of the README's precedence table."""
    c2pa = pytest.importorskip("c2pa")
    sys.path.insert(0, str(SAMPLES))
    try:
        import make_c2pa_samples as mk
    finally:
        sys.path.remove(str(SAMPLES))
    _ca, chain, key = mk.test_ca()
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key,
                                                       None))
    out = tmp_path_factory.mktemp("signed")
    dst = mk.DST

    def sign(name: str, actions: list[dict[str, Any]], generator: str = "Pipeline",
             ingredients: tuple[tuple[str, str, str], ...] = (),
             src: Path = SAMPLES / "unknown_camera.jpg") -> Path:
        builder = c2pa.Builder(mk.manifest(name, actions, generator), context=mk.CONTEXT)
        for ing, rel, label in ingredients:
            with open(out / ing, "rb") as fh:
                builder.add_ingredient({"title": ing, "relationship": rel, "label": label},
                                       "image/jpeg", fh)
        with open(src, "rb") as fin, open(out / name, "w+b") as fout:
            builder.sign(signer, "image/jpeg", fin, fout)
        return out / name

    opened = {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}}
    sign("capture.jpg", [{"action": "c2pa.created", "digitalSourceType": dst + "digitalCapture"}],
         "ARRI Camera Signer")
    sign("generated.jpg", [{"action": "c2pa.created",
                            "digitalSourceType": dst + "trainedAlgorithmicMedia",
                            "softwareAgent": {"name": "ProbeGen Model X"}}])
    parent = (("capture.jpg", "parentOf", "parent"),)
    sign("composite_agent.jpg", [{"action": "c2pa.created",
                                  "digitalSourceType": dst + "compositeWithTrainedAlgorithmicMedia",
                                  "softwareAgent": {"name": "Adobe Firefly"}}], "Adobe Express")
    sign("capture_transcoded.jpg", [opened, {"action": "c2pa.transcoded"}], "Transcoder",
         parent, out / "capture.jpg")
    sign("capture_with_generated_part.jpg",
         [opened, {"action": "c2pa.placed", "parameters": {"ingredientIds": ["part"]}}],
         "Compositor", (*parent, ("generated.jpg", "componentOf", "part")), out / "capture.jpg")
    sign("generated_converted.jpg", [opened, {"action": "c2pa.converted"}], "Converter",
         (("generated.jpg", "parentOf", "parent"),), out / "generated.jpg")
    sign("capture_edited_by_generator.jpg",
         [opened, {"action": "c2pa.edited", "softwareAgent": {"name": "Adobe Firefly"}}],
         "Adobe Photoshop", parent, out / "capture.jpg")
    sign("generated_edited_declared.jpg",
         [opened, {"action": "c2pa.edited",
                   "digitalSourceType": dst + "compositeWithTrainedAlgorithmicMedia"}],
         "Editor", (("generated.jpg", "parentOf", "parent"),), out / "generated.jpg")
    sign("capture_cropped_generated_agent.jpg",
         [opened, {"action": "c2pa.cropped", "softwareAgent": {"name": "Midjourney"}}],
         "Pipeline", parent, out / "capture.jpg")
    builder = c2pa.Builder({"claim_generator_info": [{"name": "Studio Pipeline"}], "title": "r",
                            "assertions": [
                                {"label": "c2pa.actions.v2", "data": {"actions": [
                                    {"action": "c2pa.created",
                                     "digitalSourceType": dst + "digitalCreation"}]}},
                                {"label": "com.example.render", "data": DIFFUSERS}]},
                           context=mk.CONTEXT)
    with open(SAMPLES / "unknown_camera.jpg", "rb") as fin, \
            open(out / "record_in_assertion.jpg", "w+b") as fout:
        builder.sign(signer, "image/jpeg", fin, fout)
    # XMP declarations, written by ExifTool over unsigned files
    for name, code, software in (("xmp_composite_midjourney.jpg", "composite", "Midjourney v6"),
                                 ("xmp_genfill_firefly.jpg",
                                  "compositeWithTrainedAlgorithmicMedia", "Adobe Firefly"),
                                 ("xmp_capture_a1111.jpg", "digitalCapture", None)):
        shutil.copy2(SAMPLES / "unknown_camera.jpg", out / name)
        args = [f"-XMP-iptcExt:DigitalSourceType={dst}{code}"]
        args += [f"-IFD0:Software={software}"] if software else [f"-XMP-dc:Description={A1111}"]
        exiftool(*args, out / name)
    return {p.name: p for p in out.iterdir()}


PRECEDENCE = {
    # the README's table, row by row
    "composite_agent.jpg": "ai_composite",
    "generated_edited_declared.jpg": "ai_composite",
    "xmp_composite_midjourney.jpg": "ai_composite",
    "xmp_genfill_firefly.jpg": "ai_composite",
    "capture_with_generated_part.jpg": "ai_composite",
    "capture_edited_by_generator.jpg": "ai_composite",
    "capture_cropped_generated_agent.jpg": "ai_composite",
    "generated_converted.jpg": "ai_generated",
    "generated.jpg": "ai_generated",
    "record_in_assertion.jpg": "ai_generated",
    "xmp_capture_a1111.jpg": "ai_generated",
    "capture_transcoded.jpg": "human",
    "capture.jpg": "human",
}


def test_kind_precedence_on_signed_and_tagged_files(signed: dict[str, Path]) -> None:
    recs = by_name(run_json("scan", *signed.values()))
    assert {n: r["kind"] for n, r in recs.items()} == PRECEDENCE
    human = evidence(recs["capture_transcoded.jpg"], "capture-parent")
    assert human["source"] == "c2pa" and "c2pa.transcoded" in human["meaning"]
    agent = evidence(recs["composite_agent.jpg"], "generator-software")
    assert agent["kind"] == "ai_generated"  # kept as evidence, not deciding
    assert deciding(recs["composite_agent.jpg"]) == "digital-source-type"
    assert evidence(recs["record_in_assertion.jpg"], "diffusion-parameters")["tag"] == \
        "active manifest: C2PA:com.example.render"
    edit = evidence(recs["capture_edited_by_generator.jpg"], "generator-software")
    assert edit["kind"] == "ai_composite" and "software agent of an edit" in edit["meaning"]


# -- what ExifTool's -fast leaves unread -------------------------------------------------------

def _riff(chunks: list[bytes], form: bytes = b"WAVE") -> bytes:
    body = form + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _chunk(cid: bytes, data: bytes) -> bytes:
    return cid + struct.pack("<I", len(data)) + data + (b"\0" if len(data) & 1 else b"")


def test_what_fast_leaves_unread_is_read_again(tmp_path: Path) -> None:
    """Many writers put LIST INFO (and Adobe its XMP) after a WAV's audio, where ExifTool's
    -fast stops reading, and -fast stops a GIF after its first comment: such files are read
    again without it."""
    import wave

    media = tmp_path / "media"
    media.mkdir()
    plain = media / "plain.wav"
    with wave.open(str(plain), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 800)
    data = plain.read_bytes()
    info = _chunk(b"LIST", b"INFO" + _chunk(b"ISFT", b"ElevenLabs Multilingual v2\0"))
    voice = media / "voice.wav"
    voice.write_bytes(_riff([data[12:36], data[36:], info]))  # fmt, data, then LIST
    with wave.open(str(voice)) as w:
        assert w.getnframes() == 800
    fast = subprocess.run([find_exiftool(), "-fast", "-RIFF:Software", str(voice)],
                          capture_output=True, text=True).stdout
    assert "ElevenLabs" not in fast  # what -fast alone gives: nothing
    plain.unlink()
    # a GIF: -fast stops after its first comment, before the XMP ExifTool itself wrote
    frame = media / "frame.gif"
    Image.new("P", (8, 8)).save(media / "src.gif")
    subprocess.run([find_exiftool(), "-q", "-Comment=storyboard frame 12",
                    "-XMP-xmp:CreatorTool=Midjourney v6", "-o", str(frame),
                    str(media / "src.gif")], check=True, timeout=60)
    (media / "src.gif").unlink()
    recs = by_name(run_json("scan", media))
    assert {n: (r["kind"], r["error"]) for n, r in recs.items()} == {
        "voice.wav": ("ai_generated", None), "frame.gif": ("ai_generated", None)}
    assert evidence(recs["voice.wav"], "generator-software")["tag"] == "RIFF:Software"
    assert evidence(recs["frame.gif"], "generator-software")["tag"] == "XMP-xmp:CreatorTool"


# -- bounded: hostile fields are read in bounded time, with a record ---------------------------

def test_a_50mb_hostile_field_and_10000_levels_of_nesting_are_read_with_a_record(
        tmp_path: Path) -> None:
    d = tmp_path / "hostile"
    d.mkdir()
    png(d / "steps_50mb.png", {"notes": "Steps: 1 " * (50_000_000 // 9)})
    png(d / "json_50mb.png", {"data": '{"prompt": ' * (50_000_000 // 11)})
    png(d / "nested_10000.png", {"graph": "[" * 10000 + "]" * 10000,
                                 "obj": '{"a": ' * 10000 + "1" + "}" * 10000})
    # a real record beside 10,000 levels of junk, in a value too deep for the parser
    png(d / "graph_beside_junk.png", {"graph_data": json.dumps({"prompt": GRAPH, "junk": 0}).replace(
        '"junk": 0', '"junk": ' + "[" * 10000 + "]" * 10000)})
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "provgate", "scan", str(d), "--json",
                          "--ledger", str(tmp_path / "l.db")], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    elapsed = time.monotonic() - started
    recs = by_name(json.loads(out.stdout))
    assert set(recs) == {"steps_50mb.png", "json_50mb.png", "nested_10000.png",
                         "graph_beside_junk.png"}, out.stderr
    for name in ("steps_50mb.png", "json_50mb.png", "nested_10000.png"):
        assert (recs[name]["kind"], recs[name]["error"]) == ("unknown", None), name
    graph = evidence(recs["graph_beside_junk.png"], "comfyui-api-graph")
    assert "nested too deep to parse" in graph["meaning"]
    assert elapsed < 120, elapsed  # ExifTool reads 100 MB of text; judging it is bounded


def test_matching_a_50mb_value_is_linear(cat: Catalogue) -> None:
    """The catalogue alone, on 50 MB values of every hostile kind, inside a watchdog."""
    for text in ("Steps: 1 " * (50_000_000 // 9), "{" * 50_000_000, '{"a": ' * 8_000_000,
                 '{\\"a\\": ' * 6_000_000, "\x00{" * 25_000_000, "made with " * 5_000_000,
                 "[" + ",".join(["1"] * 10_000_000) + "]"):
        with watchdog(8):
            assert cat.match(Metadata("x", {"PNG:Notes": text, "XMP-dc:Description": text}),
                             deadline=time.monotonic() + 60) == []


def test_shape_patterns_are_linear_on_1mb_adversarial_input(cat: Catalogue) -> None:
    slow = []
    for shape in cat.recogniser.shapes:
        if shape.pattern is None:
            continue
        for name, text in adversarial(shape.pattern.pattern):
            try:
                with watchdog():
                    shape.pattern.search(text)
                    cat.recogniser.text(text, cat.recogniser.budget(None))
            except Exception:  # noqa: BLE001 - the watchdog's alarm
                slow.append(f"{shape.id}: {name}")
    assert not slow


def test_the_deadline_stops_a_long_parse(cat: Catalogue) -> None:
    from provgate.signals import MatchDeadline

    with pytest.raises(MatchDeadline):
        cat.match(Metadata("x", {"PNG:Notes": json.dumps(GRAPH)}),
                  deadline=time.monotonic() - 1)
