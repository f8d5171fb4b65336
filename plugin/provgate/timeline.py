"""Timeline: the media an editorial cut actually uses, clip by clip (OpenTimelineIO).

``check --timeline CUT.otio`` gates the files a cut references instead of a folder: every clip's
media reference is resolved to local files (remapped with ``--media-root``), and each clip keeps
its track, name and source/record timecodes so a failing file can be found in the edit.
EDL, FCP XML and AAF are read by OTIO's adapters where they are installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from provgate.assets import Asset
from provgate.errors import ConfigError
from provgate.ledger import now_iso
from provgate.record import Record, unreadable

if TYPE_CHECKING:
    from provgate.session import Session


@dataclass(frozen=True)
class ClipUse:
    """One clip of the cut and the local files its media reference resolves to."""

    track: str
    name: str
    source_in: str
    source_out: str
    record_in: str
    record_out: str
    media: str | None
    paths: tuple[str, ...] = ()
    error: str | None = None
    missing: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("paths")
        d["missing"] = list(self.missing)
        return d


@dataclass(frozen=True)
class MediaRoots:
    """``OLD=NEW`` prefix remaps (an editor's mount to this machine's) and the folder that
    relative references resolve against (the timeline's own folder unless given)."""

    remaps: tuple[tuple[str, str], ...] = ()
    base: str | None = None

    @classmethod
    def parse(cls, values: Iterable[str], timeline: str) -> MediaRoots:
        remaps, base = [], None
        for v in values:
            old, sep, new = v.partition("=")
            if sep:
                if not old or not new:
                    raise ConfigError(f"--media-root {v!r}: write OLD=NEW, e.g. "
                                      "/Volumes/Show=/mnt/show")
                remaps.append((old.rstrip("/") or "/", new.rstrip("/") or "/"))
            else:
                base = v
        return cls(tuple(remaps), base or os.path.dirname(os.path.abspath(timeline)))

    def resolve(self, path: str) -> str:
        for old, new in self.remaps:
            if path == old or path.startswith(old.rstrip("/") + "/"):
                path = new + path[len(old.rstrip("/")):]
                break
        if not os.path.isabs(path):
            path = os.path.join(self.base or ".", path)
        return os.path.normpath(path)


def _otio() -> Any:
    try:
        import opentimelineio
    except ImportError as exc:
        raise ConfigError("timelines need OpenTimelineIO: pip install 'provgate[timeline]'") \
            from exc
    return opentimelineio


def read(path: str, roots: MediaRoots) -> tuple[str, list[ClipUse]]:
    """The timeline's name and every clip with media, in track order."""
    otio = _otio()
    if not os.path.isfile(path):
        raise ConfigError(f"timeline not found: {path}")
    try:
        tl = otio.adapters.read_from_file(path)
    except otio.exceptions.NoKnownAdapterForExtensionError as exc:
        raise ConfigError(f"{path}: no OpenTimelineIO adapter reads this format; install one "
                          "(otio-cmx3600-adapter for EDL, otio-fcp-adapter for FCP XML, "
                          "otio-aaf-adapter for AAF)") from exc
    except Exception as exc:  # noqa: BLE001 - adapters raise anything on a damaged file
        raise ConfigError(f"cannot read the timeline {path}: {exc}") from exc
    timelines = [tl] if isinstance(tl, otio.schema.Timeline) else [
        t for t in getattr(tl, "find_children", lambda **_: [])(
            descended_from_type=otio.schema.Timeline)]
    if not timelines:
        raise ConfigError(f"{path} holds no timeline")
    clips = [c for t in timelines for c in _clips(otio, t, roots)]
    return timelines[0].name or os.path.basename(path), clips


def _clips(otio: Any, tl: Any, roots: MediaRoots) -> list[ClipUse]:
    out = []
    counters: dict[str, int] = {}
    start = tl.global_start_time
    for track in tl.tracks:
        prefix = "A" if track.kind == otio.schema.TrackKind.Audio else "V"
        counters[prefix] = counters.get(prefix, 0) + 1
        label = track.name or f"{prefix}{counters[prefix]}"
        for clip in track.find_clips():
            ref = clip.media_reference
            if isinstance(ref, otio.schema.GeneratorReference):
                continue  # bars, solids, slates: nothing on disk to gate
            src = clip.trimmed_range()
            rec = tl.tracks.range_of_child(clip)
            if start is not None:
                rec = otio.opentime.TimeRange(rec.start_time + start.rescaled_to(rec.start_time),
                                              rec.duration)
            media, paths, error = _media(otio, clip, ref, roots)
            missing = tuple(p for p in paths if not os.path.lexists(p))
            if missing and not error:
                error = (f"media missing: {missing[0]}" if len(missing) == 1 else
                         f"media missing: {len(missing)} of {len(paths)} frames, "
                         f"first {missing[0]}")
            out.append(ClipUse(label, clip.name or os.path.basename(media or "") or "(unnamed)",
                               *_timecodes(otio, src), *_timecodes(otio, rec), media,
                               tuple(paths), error, missing))
    return out


def _media(otio: Any, clip: Any, ref: Any, roots: MediaRoots
           ) -> tuple[str | None, list[str], str | None]:
    """(the reference as written, local files, error)."""
    schema = otio.schema
    if ref is None or isinstance(ref, schema.MissingReference):
        return None, [], "media offline: the clip has no media reference"
    if isinstance(ref, schema.ImageSequenceReference):
        first, last = ref.frame_range_for_time_range(clip.trimmed_range())
        numbers = range((first - ref.start_frame) // ref.frame_step,
                        (last - ref.start_frame) // ref.frame_step + 1)
        urls = [ref.target_url_for_image_number(i) for i in numbers]
        written = ref.target_url_base + ref.name_prefix + "#" + ref.name_suffix
        local = [_local(otio, u) for u in urls]
        if any(p is None for p in local):
            return written, [], f"media is not a local file: {written}"
        return written, [roots.resolve(p) for p in local if p], None
    url = getattr(ref, "target_url", None)
    if not url:
        return None, [], f"media reference {ref.schema_name()} names no file"
    path = _local(otio, url)
    if path is None:
        return url, [], f"media is not a local file: {url}"
    return url, [roots.resolve(path)], None


def _local(otio: Any, url: str) -> str | None:
    scheme = url.split(":", 1)[0].lower() if ":" in url.split("/", 1)[0] else ""
    if scheme in ("", "file") or len(scheme) == 1:  # a Windows drive letter is not a scheme
        return otio.url_utils.filepath_from_url(url) if scheme == "file" else url
    return None


def _timecodes(otio: Any, rng: Any) -> tuple[str, str]:
    """In and out (exclusive) as SMPTE timecode, or frames where the rate has no timecode."""
    ot = otio.opentime
    rate = rng.start_time.rate
    end = rng.end_time_exclusive()
    try:
        return ot.to_timecode(rng.start_time, rate), ot.to_timecode(end, rate)
    except (ValueError, TypeError):
        return f"{rng.start_time.to_frames()}@{rate:g}", f"{end.to_frames()}@{rate:g}"


def files(clips: Sequence[ClipUse], covered: Sequence[str] = ()) -> list[str]:
    """The distinct local files the clips use, present ones only, in first-use order, less
    those a path given beside the timeline already covers (the file, or a folder holding
    it), so that no file is gated, or recorded, twice in one run."""
    tops = [os.path.abspath(c) for c in covered]
    return [p for p in dict.fromkeys(p for c in clips for p in c.paths if p not in c.missing)
            if not any(p == t or p.startswith(t.rstrip(os.sep) + os.sep) for t in tops)]


def attach(records: Iterable[Record], clips: Sequence[ClipUse]) -> Iterable[Record]:
    """Each file's record with the clips that use it (``clips``: track, name, timecodes)."""
    using: dict[str, list[dict[str, Any]]] = {}
    for c in clips:
        for p in c.paths:
            using.setdefault(p, []).append(c.to_dict())
    seen: set[str] = set()
    for rec in records:
        path = rec.asset.path
        if path in seen:
            continue  # a cut's file that a folder given beside it held too: gated once
        seen.add(path)
        rec.clips = using.get(path, [])
        yield rec


def problem_records(clips: Sequence[ClipUse], session: Session, zone: str) -> list[Record]:
    """A record for each clip whose media cannot be gated, decided by the policy: missing
    media is an error the report names, never a pass. Nothing is written to the ledger."""
    out = []
    for c in clips:
        if not c.error:
            continue
        where = f"{c.track} {c.name!r} at {c.record_in}"
        path = (c.missing[0] if c.missing else c.media) or f"({c.name})"
        rec = Record(Asset(path, os.path.dirname(path), error=c.error), unreadable(c.error),
                     session.policy.missing_media(zone, f"{c.error} ({where})"),
                     session.run_info, now_iso(), session.tools(),
                     outcome="the cut cannot be checked", clips=[c.to_dict()])
        out.append(rec)
    return out
