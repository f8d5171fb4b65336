"""One kept-open ExifTool process (pyexiftool's) with a deadline on every call; the pool in
``probe.py`` starts and restarts them. Imported only when a run reads files: a rescan of
unchanged files never starts ExifTool, nor loads pyexiftool."""

from __future__ import annotations

import os
import random
import select
import time
import warnings
from collections.abc import Sequence

import exiftool

from provgate.probe import ProbeCrashed, ProbeTimeout


class Process(exiftool.ExifTool):
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
