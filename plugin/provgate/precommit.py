"""pre-commit entry point: ``provgate check`` on the files pre-commit passes.

pre-commit appends the staged file names after the hook's ``args``, with no ``--`` between
them, so a file named ``-x.jpg`` would be read as an option. Names that exist on disk and start
with ``-`` are passed as ``./-x.jpg``; the hook's own options are left as they are.
"""

from __future__ import annotations

import os
import sys

from provgate import cli


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    safe = [f"./{a}" if a.startswith("-") and os.path.lexists(a) else a for a in args]
    cli.main(["check", *safe], prog_name="provgate")


if __name__ == "__main__":  # pragma: no cover
    main()
