"""pyblish validator: gate the files of each instance being published with provgate.

Put this folder on PYBLISHPLUGINPATH (AYON/OpenPype: add it to the project's plugin paths).
The files come from the instance's ``representations`` (``stagingDir`` + ``files``, the
AYON/OpenPype shape), ``files`` or ``path``. A file that the policy holds (needs the studio's
written approval) or blocks fails validation with provgate's reason; the records are left in
``instance.data["provgate"]`` for extractors and integrators. Nothing is moved: publishing is
the pipeline's job, so the gate runs in warn mode and records its decisions in the ledger.

Settings: ``PROVGATE_ZONE`` (default ``final``: a publish is judged as what it will become, not
where its staging folder sits), ``PROVGATE_POLICY``, ``PROVGATE_LEDGER``; or
``instance.data["provgateZone"]`` for one instance.
"""

from __future__ import annotations

import os
from typing import Any

import pyblish.api

try:  # AYON and OpenPype show this error type as a validation report, not a crash
    from ayon_core.pipeline import PublishValidationError
except ImportError:
    try:
        from openpype.pipeline import PublishValidationError
    except ImportError:
        class PublishValidationError(Exception):  # type: ignore[no-redef]
            """A publish that provgate holds or blocks."""


class ValidateProvgate(pyblish.api.InstancePlugin):
    """No generated media in a publish without the studio's written approval."""

    label = "Validate AI Provenance (provgate)"
    order = pyblish.api.ValidatorOrder
    families = ["*"]
    hosts = ["*"]
    optional = True

    def process(self, instance: Any) -> None:
        paths = instance_files(instance.data)
        if not paths:
            self.log.debug("provgate: no files in %s", instance)
            return
        from provgate.session import Options, Session

        zone = instance.data.get("provgateZone") or os.environ.get("PROVGATE_ZONE") or "final"
        with Session(Options(zone=zone, mode="warn", actor="pyblish")) as session:
            records = list(session.run(paths))
        instance.data["provgate"] = [r.to_json() for r in records]
        held = [r for r in records if r.held]
        for r in records:
            self.log.info("provgate: %s %s (%s)", r.action, r.path, r.kind)
        if held:
            lines = "\n".join(f"- {os.path.basename(r.path)}: {r.decision.reason}"
                              for r in held)
            raise PublishValidationError(
                f"provgate holds {len(held)} of {len(records)} files in {instance}:\n{lines}\n"
                "Get the studio's written approval (provgate approve FILE --ref REF --by NAME) "
                "or replace the files.")


def instance_files(data: dict[str, Any]) -> list[str]:
    """Absolute paths of the files an instance publishes, in order, without repeats."""
    found: list[str] = []
    for rep in data.get("representations") or []:
        names = rep.get("files") or []
        names = [names] if isinstance(names, str) else names
        staging = rep.get("stagingDir") or ""
        found.extend(os.path.join(staging, n) for n in names)
    files = data.get("files") or []
    found.extend([files] if isinstance(files, str) else files)
    if data.get("path"):
        found.append(data["path"])
    return list(dict.fromkeys(os.path.abspath(p) for p in found))
