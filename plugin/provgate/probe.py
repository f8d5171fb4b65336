"""ExifTool pool: the only module that talks to ExifTool.

pyexiftool keeps ExifTool processes open (``-stay_open``); this module adds what a gate on
delivery storage needs on top of it (FIELD-NOTES.md):

- a deadline on every call, after which the process is killed and restarted and the batch is
  split in halves until the file that hangs is isolated (pyexiftool has no timeout);
- stdout and stderr drained together, so a long error text cannot deadlock the pipe;
- names that ExifTool could misread (control characters, trailing blanks, bytes that are not
  UTF-8) are read through a private symlink with a plain name; every path is absolute, so no
  name can ever be taken for an option;
- one bad file never fails the batch: results are matched to inputs by ``SourceFile``.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import random
import re
import select
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import exiftool

from provgate.errors import ExifToolUnavailable

MIN_VERSION = (12, 15)
# -G3:1 keeps every copy of a repeated tag, keyed by document (SIGNALS.md 3.3): the JSON
# output otherwise drops all but the first manifest. -fast is safe, -fast2 is not.
COMMON_ARGS = ["-json", "-G3:1", "-a", "-n", "-q", "-fast", "-charset", "filename=utf8",
               "-api", "largefilesupport=1"]
ALWAYS_TAGS = ["-File:FileType", "-File:MIMEType", "-ExifTool:Error", "-ExifTool:Warning"]
_DOC_PREFIX = re.compile(r"^(Main|Doc[0-9-]+):")


class ProbeTimeout(Exception):
    """ExifTool did not answer in time."""


class ProbeCrashed(Exception):
    """The ExifTool process died or closed its pipes."""


@dataclass(frozen=True)
class Metadata:
    """What ExifTool read from one file: ``tags`` maps ``[DocN:]Group:Tag`` to a value."""

    path: str
    tags: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def file_type(self) -> str | None:
        return self.tags.get("File:FileType")

    def items(self) -> Iterable[tuple[str, str, Any]]:
        """(full key, key without the document prefix, value) for every tag."""
        for key, value in self.tags.items():
            # most keys have no document prefix: skip the regex for them
            yield key, (_DOC_PREFIX.sub("", key) if key.startswith("Doc") else key), value


def find_exiftool(executable: str | None = None) -> str:
    """Locate ExifTool: the given path, ``PROVGATE_EXIFTOOL``, or the PATH."""
    name = executable or os.environ.get("PROVGATE_EXIFTOOL") or "exiftool"
    found = shutil.which(name)
    if not found:
        raise ExifToolUnavailable(
            f"ExifTool not found ({name}): install it (Debian/Ubuntu: apt-get install "
            "libimage-exiftool-perl; macOS: brew install exiftool) or set PROVGATE_EXIFTOOL")
    return found


class _Process(exiftool.ExifTool):
    """One kept-open ExifTool with a deadline on each call."""

    start_timeout = 15.0

    def execute(self, *params: str | bytes, raw_bytes: bool = False) -> str | bytes:
        """pyexiftool's own calls (the version check in ``run``) also get a deadline: its
        reader spins forever on a process that exits (FIELD-NOTES.md)."""
        args = [p if isinstance(p, bytes) else p.encode("utf-8") for p in params]
        out, err = self.call(args, self.start_timeout)
        self._last_stdout, self._last_stderr = out, err
        return out if raw_bytes else out.decode("utf-8", "replace")

    def call(self, args: Sequence[bytes], timeout: float) -> tuple[bytes, bytes]:
        tag = random.randint(100000, 999999)
        out_end, err_end = f"{{ready{tag}}}".encode(), f"post{tag}".encode()
        cmd = b"\n".join([*args, b"-echo4", f"=${{status}}=post{tag}".encode(),
                          f"-execute{tag}".encode()]) + b"\n"
        proc = self._process
        try:
            proc.stdin.write(cmd)
            proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise ProbeCrashed(f"ExifTool stopped accepting input: {exc}") from exc
        bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
        ends = {proc.stdout.fileno(): out_end, proc.stderr.fileno(): err_end}
        pending = set(bufs)
        deadline = time.monotonic() + timeout
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProbeTimeout(f"ExifTool gave no answer within {timeout:g} s")
            ready, _, _ = select.select(list(pending), [], [], remaining)
            for fd in ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise ProbeCrashed("ExifTool exited in the middle of a batch")
                bufs[fd].extend(chunk)
                if bytes(bufs[fd][-64:]).rstrip().endswith(ends[fd]):
                    pending.discard(fd)
        out = bytes(bufs[proc.stdout.fileno()]).rstrip()[: -len(out_end)]
        err = bytes(bufs[proc.stderr.fileno()]).rstrip()[: -len(err_end)]
        return out, err

    def kill(self) -> None:
        """Kill a hung or broken process; pyexiftool notices on its next ``running`` check."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _ = self.running

    def restart(self) -> None:
        with warnings.catch_warnings():  # pyexiftool warns that the killed process "died"
            warnings.simplefilter("ignore")
            self.run()

    def stop(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.running:
                try:
                    self.terminate(timeout=5)
                except Exception:  # noqa: BLE001 - a dying process must not fail shutdown
                    self.kill()


def _needs_alias(path: str) -> bool:
    """Names ExifTool's argument file cannot carry verbatim (FIELD-NOTES: pyexiftool pitfalls)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return any(ord(c) < 32 or c == "\x7f" for c in path) or path != path.rstrip()


class ExifToolPool:
    """A fixed set of kept-open ExifTool processes that read batches of files in parallel.

    ``tags`` are ExifTool tag arguments (``-PNG:all``, ...), or None for every tag.
    Use as a context manager; ``probe()`` may be called many times.
    """

    def __init__(self, tags: Sequence[str] | None, processes: int | None = None, timeout: float = 30.0,
                 batch_size: int = 64, executable: str | None = None,
                 config: str | None = None) -> None:
        self.executable = find_exiftool(executable)
        # a facility's own ExifTool config (user-defined tags), as ``exiftool -config``
        self.config = config or os.environ.get("PROVGATE_EXIFTOOL_CONFIG") or None
        # None: every tag (see pipeline.Gate.pool for why that is the faster choice)
        self.tag_args = ([] if tags is None else
                         [t.encode() for t in dict.fromkeys([*ALWAYS_TAGS, *tags])])
        self.timeout = timeout
        self.batch_size = max(1, batch_size)
        self.processes = max(1, processes or os.cpu_count() or 1)
        self._idle: queue.Queue[_Process] = queue.Queue()
        self._all: list[_Process] = []
        self._alias_dir = tempfile.mkdtemp(prefix="provgate-alias-")
        self._alias_seq = itertools.count()
        self._alias_lock = threading.Lock()
        self.restarts = 0
        self.version = ""
        # pyexiftool asks the kernel to end ExifTool when the *thread* that started it ends
        # (PR_SET_PDEATHSIG): every start and restart happens in threads the pool owns, which
        # live as long as the pool; the processes start together.
        self._spawner = ThreadPoolExecutor(self.processes, thread_name_prefix="provgate-exiftool")
        starts = [self._spawner.submit(self._start) for _ in range(self.processes)]
        try:
            for fut in starts:
                proc = fut.result()
                self._all.append(proc)
                self._idle.put(proc)
        except BaseException:
            for fut in starts:
                if fut.exception() is None:
                    self._all.append(fut.result())
            self.close()
            raise

    def _start(self) -> _Process:
        """Start one ExifTool; its version is read by pyexiftool under our deadline."""
        proc = _Process(executable=self.executable, common_args=COMMON_ARGS,
                        config_file=self.config)
        try:
            proc.run()
        except Exception as exc:  # pyexiftool raises several kinds here
            raise ExifToolUnavailable(f"ExifTool at {self.executable} did not start: {exc}") from exc
        parts = tuple(int(p) for p in re.findall(r"\d+", proc.version)[:2])
        if parts < MIN_VERSION:
            proc.stop()
            raise ExifToolUnavailable(
                f"ExifTool {proc.version} is too old: provgate needs "
                f"{'.'.join(map(str, MIN_VERSION))} or newer (apt-get install "
                "libimage-exiftool-perl)")
        self.version = proc.version
        return proc

    def __enter__(self) -> ExifToolPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in self._all:
            proc.stop()
        self._all.clear()
        self._spawner.shutdown(wait=True)
        shutil.rmtree(self._alias_dir, ignore_errors=True)

    def probe(self, paths: Sequence[str]) -> dict[str, Metadata]:
        """Read every path; the result has one Metadata per input path, never fewer."""
        batches = [list(paths[i:i + self.batch_size])
                   for i in range(0, len(paths), self.batch_size)]
        results: dict[str, Metadata] = {}
        if len(batches) <= 1 or self.processes == 1:
            for batch in batches:
                results.update(self._probe_batch(batch))
            return results
        with ThreadPoolExecutor(max_workers=self.processes) as ex:
            for part in ex.map(self._probe_batch, batches):
                results.update(part)
        return results

    def _probe_batch(self, paths: list[str]) -> dict[str, Metadata]:
        proc = self._idle.get()
        try:
            return self._read_isolating(proc, paths)
        finally:
            self._idle.put(proc)

    def _read_isolating(self, proc: _Process, paths: list[str]) -> dict[str, Metadata]:
        """Read a batch; on a hang or crash restart ExifTool and split until the culprit is alone."""
        try:
            return self._read(proc, paths)
        except (ProbeTimeout, ProbeCrashed) as exc:
            self._restart(proc)
            if len(paths) == 1:
                return {paths[0]: Metadata(paths[0], error=f"unreadable: {exc}")}
            mid = len(paths) // 2
            return {**self._read_isolating(proc, paths[:mid]),
                    **self._read_isolating(proc, paths[mid:])}

    def _restart(self, proc: _Process) -> None:
        proc.kill()
        self.restarts += 1
        try:
            self._spawner.submit(proc.restart).result()
        except Exception as exc:  # noqa: BLE001
            raise ExifToolUnavailable(f"ExifTool could not be restarted: {exc}") from exc

    def _read(self, proc: _Process, paths: list[str]) -> dict[str, Metadata]:
        names = {self._argument_name(p): p for p in paths}
        try:
            out, _err = proc.call([*self.tag_args, *(n.encode("utf-8") for n in names)],
                                  self.timeout)
        finally:
            for name, original in names.items():
                if name != original:
                    _unlink_quiet(name)
        records = json.loads(out.decode("utf-8", "replace")) if out.strip() else []
        results: dict[str, Metadata] = {}
        for rec in records:
            original = names.get(rec.pop("SourceFile", ""))
            if original is not None:
                results[original] = _to_metadata(original, rec)
        for original in paths:
            if original not in results:
                results[original] = Metadata(original, error=_missing_reason(original))
        return results

    def _argument_name(self, path: str) -> str:
        path = os.path.abspath(path)
        if not _needs_alias(path):
            return path
        with self._alias_lock:
            alias = os.path.join(self._alias_dir, f"a{next(self._alias_seq)}")
        ext = os.path.splitext(path)[1]
        if ext and not _needs_alias(ext) and len(ext) <= 16:
            alias += ext
        os.symlink(os.fsencode(path), alias)
        return alias


def _to_metadata(path: str, rec: dict[str, Any]) -> Metadata:
    error = rec.pop("ExifTool:Error", None) or rec.pop("Main:ExifTool:Error", None)
    warns = []
    for key in [k for k in rec if k.endswith("ExifTool:Warning")]:
        value = rec.pop(key)
        warns.extend(value if isinstance(value, list) else [value])
    tags = {_DOC_PREFIX.sub("", k) if k.startswith("Main:") else k: v for k, v in rec.items()}
    return Metadata(path, tags, str(error) if error else None, tuple(str(w) for w in warns))


def _missing_reason(path: str) -> str:
    if not os.path.lexists(path):
        return "vanished: the file was removed or renamed before it could be read"
    if not os.access(path, os.R_OK):
        return "permission denied: provgate cannot read this file"
    return "unreadable: ExifTool returned no record for this file"


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


WRITE_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exiftool.config")


def write_tags(path: str, tags: dict[str, str], create: bool = False,
               executable: str | None = None, timeout: float = 60.0) -> None:
    """Write XMP tags with ExifTool: into ``path`` in place, or as a new XMP file when
    ``create`` (ExifTool refuses to replace an existing file with ``-o``). One process per
    call: writes are rare, and a kept-open reader should not also write."""
    import subprocess

    exe = find_exiftool(executable)
    assignments = [f"-{k}={v}" for k, v in tags.items()]
    target = os.path.abspath(path)
    cmd = [exe, "-config", WRITE_CONFIG, "-q", "-m", "-charset", "filename=utf8", *assignments]
    cmd += ["-o", target] if create else ["-overwrite_original", target]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ExifToolUnavailable(f"ExifTool did not finish writing {path} in {timeout:g} s") \
            from exc
    if out.returncode != 0:
        raise ExifToolUnavailable(f"ExifTool could not write {path}: "
                                  f"{(out.stderr or out.stdout).strip()[:300]}")


def read_tags(path: str, names: Sequence[str], executable: str | None = None) -> dict[str, Any]:
    """Read a few tags once (to verify a write), with the same config as ``write_tags``."""
    import subprocess

    exe = find_exiftool(executable)
    out = subprocess.run([exe, "-config", WRITE_CONFIG, "-json", "-G1", "-n", "-charset",
                          "filename=utf8", *(f"-{n}" for n in names), os.path.abspath(path)],
                         capture_output=True, text=True, timeout=60)
    try:
        return json.loads(out.stdout)[0]
    except (ValueError, IndexError):
        return {}
