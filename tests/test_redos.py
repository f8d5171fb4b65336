"""Bounded judging: no marker regex of the catalogue is super-linear, no value is searched whole,
and the crafted PNG of issue 12 (a 300 KB `parameters` text that kept the old A1111 marker busy
for minutes) is judged like any other file.

No timing assertions: a watchdog (``signal.alarm``) interrupts a search that runs for seconds on
a 1 MB input that a linear regex reads in well under one; a failure is the alarm firing.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import SAMPLES, Watchdog, run_json
from conftest import watchdog as _watchdog
from provgate import signals
from provgate.probe import ExifToolPool, Metadata
from provgate.signals import DEFAULT_CATALOGUE, MATCH_WINDOW, Catalogue, MatchDeadline

MB = 1 << 20
WATCHDOG_S = 4  # a linear search of 1 MB takes well under a second


def watchdog(seconds: int = WATCHDOG_S):  # noqa: ANN201 - conftest's context manager
    return _watchdog(seconds)
# the marker as it was: every "Steps: N" retried its `.*` to the end of the value
OLD_A1111 = r"Steps: *\d+.*(Sampler|Seed|CFG scale):"
# the attack as filed: a `parameters` text made of A1111's own opening, without a key after it
HOSTILE_PARAMETERS = "Steps: 1 " * (300_000 // 9)
A1111_SETTINGS = ("\nNegative prompt: blurry\nSteps: 28, Sampler: Euler a, CFG scale: 7, "
                  "Seed: 1234, Size: 64x64, Model: sd_xl_base_1.0")


def _patterns(cat: Catalogue) -> dict[str, re.Pattern[str]]:
    """Every marker regex, compiled exactly as the catalogue compiled it."""
    rules = [r for rs in cat._exact.values() for r in rs] + [r for _, r in cat._wild]
    return {r.marker: r.pattern for r in rules if r.pattern is not None}


def _literals(pattern: str) -> list[str]:
    """The text a pattern looks for, in pieces: what an attacker repeats to make it retry."""
    text = re.sub(r"\\[dw]", "1", pattern)
    text = re.sub(r"\\s", " ", text)
    text = re.sub(r"\\[AZbB]", "", text)
    text = re.sub(r"\(\?[:>=!]", "(", text)
    text = re.sub(r"(?<!\\)[*+?]", "", text)  # "Steps: *+\d" -> "Steps: 1"
    text = re.sub(r"\\(.)", r"\1", text)
    pieces = re.split(r"[()|\[\]{}^$.]+", text)
    return sorted({p for p in pieces if p.strip()})


def adversarial(pattern: str, size: int = MB) -> Iterator[tuple[str, str]]:
    """(name, text) of about ``size`` characters: long runs of single characters, the pattern's
    own pieces repeated with separators (many starts, each of which a super-linear pattern scans
    to the end), each piece followed by a long run; every one with and without a terminator
    that supplies whatever key or bracket the pattern waits for."""
    words = _literals(pattern)
    bases: list[tuple[str, str]] = [(f"{c!r}*", c * size) for c in ' a1":\n{']
    for sep in ("", " ", ": 1 ", '": ', "\n"):
        unit = sep.join(words) + sep
        bases.append((f"words joined by {sep!r}", unit * (size // len(unit) + 1)))
    bases += [(f"{w!r} then spaces", w + " " * size) for w in words[:8]]
    terminator = ":" + ": ".join(words) + ': 1 "}\n'
    for name, text in bases:
        yield name, text
        yield name + " + terminator", text + terminator


def test_the_watchdog_stops_the_old_quadratic_a1111_marker() -> None:
    """The harness can fail: the marker as filed is caught by the generated inputs."""
    old = re.compile(OLD_A1111, re.IGNORECASE | re.DOTALL)
    text = next(t for n, t in adversarial(OLD_A1111) if n == "words joined by ' '")
    with pytest.raises(Watchdog), watchdog(2):
        old.search(text)


def test_every_catalogue_regex_is_linear_on_1mb_adversarial_input() -> None:
    cat = Catalogue.load()
    patterns = _patterns(cat)
    assert "sd-webui-parameters" in patterns and len(patterns) >= 10
    # the catalogue's other regexes (damaged-file warnings, JPEG trailers), with every flag
    for key in ("warnings", "jpeg_trailers"):
        for i, text in enumerate(cat.doc.get("integrity", {}).get(key, ())):
            patterns[f"integrity.{key}[{i}]"] = re.compile(text, re.IGNORECASE | re.DOTALL)
    cases = [(marker, pat, name, text) for marker, pat in patterns.items()
             for name, text in adversarial(pat.pattern)]
    cases += [("sd-webui-parameters", patterns["sd-webui-parameters"], f"filed attack{end}",
               ("Steps: 1 " * (MB // 9)) + end) for end in ("", A1111_SETTINGS)]
    slow = []
    for marker, pat, name, text in cases:
        try:
            with watchdog():
                pat.search(text)
        except Watchdog:
            slow.append(f"{marker}: {name}")
    assert not slow, f"super-linear marker regexes (alarm after {WATCHDOG_S} s on 1 MB): {slow}"


def test_the_rewritten_a1111_marker_means_what_it_meant() -> None:
    new = _patterns(Catalogue.load())["sd-webui-parameters"]
    old = re.compile(OLD_A1111, re.IGNORECASE | re.DOTALL)
    for text in ["a cat" + A1111_SETTINGS, "Steps: 20, Sampler: Euler a", "steps:20 cfg scale: 7",
                 "x Steps: a Steps:  4 then, later\nSeed: 5", "Steps: x Sampler: y",
                 "Sampler: Euler, Steps: 20", "Steps: 20", "Steps: 20, Sampler Euler",
                 (SAMPLES / "EXPECTED.json").read_text()]:
        assert bool(new.search(text)) == bool(old.search(text)), text


def _png(path: Path, parameters: str) -> Path:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", parameters)
    Image.new("RGB", (64, 64), (40, 60, 90)).save(path, pnginfo=info)
    return path


@pytest.fixture
def crafted(tmp_path: Path) -> dict[str, Path]:
    """The filed PNG (300 KB of "Steps: 1 ", no key after), the same crafted text as the
    prompt of a real A1111 record, and a normal A1111 sample."""
    folder = tmp_path / "crafted"
    folder.mkdir()
    normal = folder / "normal_a1111.png"
    shutil.copy2(SAMPLES / "ai_a1111_txt2img.png", normal)
    return {"hostile": _png(folder / "hostile.png", HOSTILE_PARAMETERS),
            "a1111": _png(folder / "crafted_a1111.png", HOSTILE_PARAMETERS + A1111_SETTINGS),
            "normal": normal}


def _metadata(paths: list[Path]) -> dict[str, Metadata]:
    """What the real ExifTool reads, asked for every tag as the pipeline does."""
    with ExifToolPool(None, processes=1) as pool:
        return pool.probe([str(p) for p in paths])


def test_the_crafted_png_is_matched_in_bounded_time_and_a1111_still_recognised(
        crafted: dict[str, Path]) -> None:
    metas = _metadata(list(crafted.values()))
    value = metas[str(crafted["hostile"])].tags["PNG:Parameters"]
    assert len(value) >= 299_000  # ExifTool hands over the whole crafted text
    cat = Catalogue.load()
    markers = {}
    for name, path in crafted.items():
        with watchdog():  # the old marker: minutes on this file
            markers[name] = {s.marker for s in cat.match(metas[str(path)])}
    assert "sd-webui-parameters" not in markers["hostile"]
    assert "sd-webui-parameters" in markers["a1111"]
    assert "sd-webui-parameters" in markers["normal"]

    # the real scan: the crafted A1111 record is AI, the crafted junk is not, and the evidence
    # says how long the value was and how much of it the markers read
    recs = {Path(r["path"]).name: r for r in run_json("scan", crafted["hostile"].parent)}
    assert recs["crafted_a1111.png"]["kind"] == "ai_generated"
    assert recs["normal_a1111.png"]["kind"] == "ai_generated"
    assert recs["hostile.png"]["kind"] != "ai_generated" and not recs["hostile.png"]["error"]
    ev = next(e for e in recs["crafted_a1111.png"]["evidence"]
              if e["marker"] == "sd-webui-parameters")
    assert f"({len(HOSTILE_PARAMETERS + A1111_SETTINGS)} chars; markers read its first and " \
           f"last {MATCH_WINDOW} chars)" in ev["value"]
    assert len(ev["value"]) < 1000


def test_a_regex_never_sees_more_than_two_windows_of_a_value(tmp_path: Path,
                                                              crafted: dict[str, Path]) -> None:
    """A marker that matches any value of 2 windows and more never fires on a 300 KB value:
    it is only ever shown the value's first and last MATCH_WINDOW characters."""
    probe = 2 * MATCH_WINDOW + 2
    cat_file = tmp_path / "sig.toml"
    cat_file.write_text(DEFAULT_CATALOGUE.read_text() + (
        '\n[[markers]]\nid = "sees-everything"\nmeaning = "test"\nkind = "ai_possible"\n'
        f'tags = ["PNG:Parameters"]\npattern = \'\\A.{{{probe}}}\'\n'))
    cat = Catalogue.load(cat_file)
    meta = _metadata([crafted["hostile"]])[str(crafted["hostile"])]
    assert _patterns(cat)["sees-everything"].search(meta.tags["PNG:Parameters"])  # the whole would
    assert "sees-everything" not in {s.marker for s in cat.match(meta)}
    assert len(signals._window("z" * MB)) == 2 * MATCH_WINDOW + 1
    assert signals._window("z" * 2 * MATCH_WINDOW) == "z" * 2 * MATCH_WINDOW  # short: whole


def test_matching_stops_at_the_callers_deadline(crafted: dict[str, Path]) -> None:
    meta = _metadata([crafted["a1111"]])[str(crafted["a1111"])]
    cat = Catalogue.load()
    with pytest.raises(MatchDeadline, match="deadline"):
        cat.match(meta, deadline=time.monotonic() - 1)
    assert cat.match(meta, deadline=time.monotonic() + 3600)  # a deadline not reached: no effect
