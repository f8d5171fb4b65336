"""Data files (signature catalogue, default policy) and the JSON Schemas that validate them.

Schemas live in the repository's ``schemas/`` folder; wheels carry a copy inside the package.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

from provgate.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent


def schema_dir() -> Path:
    """The folder holding the JSON Schemas, for an installed wheel or a source checkout."""
    for candidate in (PACKAGE_DIR / "schemas", PACKAGE_DIR.parent.parent / "schemas"):
        if (candidate / "decision.schema.json").is_file():
            return candidate
    raise ConfigError("provgate's JSON Schemas are missing: reinstall provgate")


@functools.cache
def schema(name: str) -> dict[str, Any]:
    """Load ``schemas/NAME.schema.json``."""
    return json.loads((schema_dir() / f"{name}.schema.json").read_text(encoding="utf-8"))


@functools.cache
def validator(name: str) -> Any:
    import jsonschema  # on first use: a rescan with the built-in data never needs it
    from referencing import Registry, Resource

    # schemas refer to each other by $id (a report's files are decision records)
    docs = [schema(p.name.removesuffix(".schema.json"))
            for p in sorted(schema_dir().glob("*.schema.json"))]
    registry = Registry().with_resources(
        (d["$id"], Resource.from_contents(d)) for d in docs if "$id" in d)
    cls = jsonschema.validators.validator_for(schema(name))
    return cls(schema(name), registry=registry, format_checker=cls.FORMAT_CHECKER)


def validate(instance: Any, name: str, where: str) -> None:
    """Raise ConfigError naming the key path of the first problem found in ``instance``."""
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"{where}: {key}: {err.message}")


def load_toml(path: Path, schema_name: str, builtin: bool = False) -> dict[str, Any]:
    """Read a TOML file and validate it, with errors that name the line or the key.

    ``builtin`` files ship inside the package and are validated by the test suite
    (tests/test_samples.py), not again at every start."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    if not builtin:
        validate(doc, schema_name, str(path))
    return doc


def digest(doc: Any) -> str:
    """sha256 of a canonical JSON form: the identity of a policy or catalogue in records."""
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


def canonical_json(doc: Any) -> str:
    return _CANONICAL.encode(doc)


# made once: json.dumps builds an encoder per call, and a run encodes several per file
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              default=str)
