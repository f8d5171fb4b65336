"""Content Credentials: read and validate C2PA manifests with c2pa-python, offline.

ExifTool shows what a manifest claims but cannot tell a valid signature from a broken one, and
12.57 does not see manifests in MP4, WAV, WebP, TIFF, PDF... (SIGNALS.md 3.3). c2pa-python
validates every supported file; remote manifest and OCSP fetching are switched off, and trust
comes only from the bundle the facility configures.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from provgate.probe import Metadata, plain_key
from provgate.signals import Catalogue, Signal
from provgate.vocabulary import AI_KINDS


def c2pa_state_from_metadata(meta: Metadata) -> str:
    """What ExifTool alone can say about Content Credentials (no signature check)."""
    for key in meta.tags:
        if plain_key(key).startswith(("CBOR:", "JUMBF:")):  # a JUMBF store: a manifest to validate
            return "not_checked"
    return pointer_state(meta)


def pointer_state(meta: Metadata) -> str:
    """No manifest in the file: a ``self#jumbf`` provenance pointer means it was stripped, a
    URL that it lives elsewhere (never fetched), nothing that there never was one."""
    pointer = str(meta.tags.get("XMP-dcterms:Provenance") or "")
    if pointer.startswith("self#jumbf"):
        return "stripped"
    if pointer.lower().startswith(("http://", "https://")):
        return "remote"
    return "absent"


_c2pa: Any = None
_IMPORT_ERROR: str | None = None
_LOAD_LOCK = threading.Lock()


def _load() -> Any:
    """Import c2pa-python on first use: a rescan of unchanged files never needs it, and its
    native library costs a noticeable share of a short run's start-up."""
    global _c2pa, _IMPORT_ERROR
    with _LOAD_LOCK:
        if _c2pa is None and _IMPORT_ERROR is None:
            try:  # a regular dependency, but its wheel is missing on some platforms
                import c2pa
                _c2pa = c2pa
            except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
                _IMPORT_ERROR = f"c2pa-python is not importable: {exc}"
    return _c2pa


def installed() -> str | None:
    """The c2pa-python version if it can be imported, without importing it."""
    import importlib.metadata
    import importlib.util

    try:
        if importlib.util.find_spec("c2pa") is None:
            return None
        return importlib.metadata.version("c2pa-python")
    except (ValueError, importlib.metadata.PackageNotFoundError):
        return None


# failures that concern trust in the signer, not the integrity of the file
# signingCredential.invalid is what an extended key usage outside the default list gives
# (Microsoft signers): a trust-configuration question, answered by the bundle's EKU list
TRUST_CODES = frozenset({"signingCredential.untrusted", "signingCredential.invalid",
                         "cawg.x509.credential.untrusted"})
_IN_MEMORY = 1 << 20
_AI_TO_INGREDIENT = {"parentOf": None, "componentOf": "ai_composite", "inputTo": "ai_composite"}
_EDIT_AGENT = "CBOR:EditActionsSoftwareAgent"  # pseudo tag: the agents of actions that edit
# assertions that are bindings, signatures or pictures, never a generation record
_NOT_RECORDS = ("c2pa.hash", "c2pa.thumbnail", "c2pa.ingredient", "c2pa.soft-binding",
                "c2pa.cloud-data", "c2pa.time-stamp", "c2pa.certificate-status", "cawg.identity",
                "c2pa.actions")


@dataclass(frozen=True)
class TrustBundle:
    """PEM trust anchors, allowed end-entity certificates and an EKU list, as files."""

    anchors: tuple[Path, ...] = ()
    allowed: tuple[Path, ...] = ()
    config: Path | None = None

    def settings(self) -> dict[str, Any]:
        trust: dict[str, Any] = {}
        if self.anchors:
            trust["trust_anchors"] = "".join(p.read_text() for p in self.anchors)
        if self.allowed:
            trust["allowed_list"] = "".join(p.read_text() for p in self.allowed)
        if self.config:
            trust["trust_config"] = self.config.read_text()
        return trust

    @property
    def digest(self) -> str | None:
        """sha256 over the bundle's files, recorded next to the policy digest."""
        files = [*self.anchors, *self.allowed, *([self.config] if self.config else [])]
        if not files:
            return None
        h = hashlib.sha256()
        for p in files:
            h.update(p.read_bytes())
        return h.hexdigest()


@dataclass(frozen=True)
class Credentials:
    state: str
    signals: tuple[Signal, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    warning: str | None = None

    @property
    def manifest_read(self) -> bool:
        return self.state in ("valid_trusted", "valid_untrusted") or bool(self.details.get("manifests"))


def availability() -> tuple[bool, str]:
    """(available, description) for ``doctor``."""
    lib = _load()
    if lib is None:
        return False, _IMPORT_ERROR or "c2pa-python is not installed"
    return True, f"c2pa-python {lib.__version__} (c2pa-rs {lib.sdk_version()})"


class CredentialChecker:
    """Validates C2PA manifests; thread-safe for use from the probe's workers."""

    def __init__(self, catalogue: Catalogue, trust: TrustBundle | None = None) -> None:
        self.catalogue = catalogue
        self.trust = trust or TrustBundle()
        self._mimes: frozenset[str] = frozenset()
        self._context = None
        self._state: tuple[bool, str] | None = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self._ready()[0]

    @property
    def description(self) -> str:
        return self._ready()[1]

    def _ready(self) -> tuple[bool, str]:
        with self._lock:
            if self._state is None:
                self._state = availability()
                if self._state[0]:
                    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False,
                                                           "ocsp_fetch": False}}
                    trust = self.trust.settings()
                    if trust:
                        settings["trust"] = trust
                        settings["verify"]["verify_trust"] = True
                    self._context = _c2pa.Context.from_dict(settings)
                    self._mimes = frozenset(_c2pa.Reader.get_supported_mime_types())
            return self._state

    def check(self, path: str, meta: Metadata, seen: str,
              marker: bool | None = None, sidecar: str | None = None) -> Credentials:
        """The C2PA state of one file, with the signals its manifests carry.

        ``seen`` is what ExifTool alone could tell (verdict.c2pa_state_from_metadata);
        ``marker`` whether the file's bytes hold a C2PA label (None: not looked at);
        ``sidecar`` its real C2PA sidecar (``NAME.EXT.c2pa``, ``NAME.c2pa``), which the read
        stage found with the batch's folder listing.
        """
        fallback = pointer_state(meta)
        if not self.available:
            # ExifTool's word stands only where it can see a manifest at all
            sees = meta.file_type in _EXIFTOOL_SEES_C2PA
            return Credentials(seen if sees else "not_checked", warning=self.description)
        mime = meta.tags.get("File:MIMEType")
        if mime not in self._mimes:
            return Credentials(fallback)
        # c2pa-python is spared only a file whose bytes hold no C2PA label and in which
        # ExifTool saw no store either. ExifTool's silence alone settles nothing: c2pa-rs
        # reads a JPEG store under any APP11 identifier, ExifTool only under "JP"; and a
        # store cut over tiny APP11 segments shows ExifTool what its bytes never spell.
        if sidecar is None and marker is False and mime in BYTES_SETTLE_C2PA \
                and seen != "not_checked":
            return Credentials(fallback)
        try:
            with open(path, "rb") as fh:
                # c2pa reads through Python callbacks: from memory a small file costs ~20 %
                # less than from the file (a whole delivery of stills is mostly small files)
                small = os.fstat(fh.fileno()).st_size <= _IN_MEMORY
                stream = io.BytesIO(fh.read()) if small else fh
                if sidecar is not None:
                    reader = _c2pa.Reader(mime, stream,
                                          manifest_data=Path(sidecar).read_bytes(),
                                          context=self._context)
                else:
                    reader = _c2pa.Reader(mime, stream, context=self._context)
                with reader:
                    store = json.loads(reader.json())
        except Exception as exc:  # noqa: BLE001 - c2pa raises many C2paError subclasses
            return self._from_error(str(exc), fallback, meta)
        return self._from_store(store)

    def _from_error(self, message: str, fallback: str, meta: Metadata) -> Credentials:
        text = message.strip()
        if "ManifestNotFound" in text or "no JUMBF" in text:
            return Credentials(fallback)
        if "Remote" in text:
            return Credentials("remote", details={"codes": [text]})
        if "could not be parsed" in text and fallback in ("absent",):
            return Credentials("absent", warning=f"c2pa: {text}")
        return Credentials("invalid", details={"codes": [text]})

    def _from_store(self, store: dict[str, Any]) -> Credentials:
        manifests = store.get("manifests", {})
        active = store.get("active_manifest")
        codes = _failure_codes(store)
        integrity = [c for c in codes if c not in TRUST_CODES]
        vstate = store.get("validation_state")
        if integrity or (vstate == "Invalid" and not codes):
            state = "invalid"
        elif vstate == "Trusted":
            state = "valid_trusted"
        else:
            state = "valid_untrusted"
        signals = self._manifest_signals(manifests, active, "active manifest", set())
        details = {
            "validation_state": vstate,
            "codes": codes,
            "manifests": len(manifests),
            **_summary(manifests.get(active, {})),
            "ingredients": _ingredient_tree(manifests, active, set()),
        }
        return Credentials(state, tuple(signals), details)

    def _manifest_signals(self, manifests: dict[str, Any], label: str | None, where: str,
                          seen: set[str]) -> list[Signal]:
        if not label or label in seen or label not in manifests:
            return []
        seen.add(label)
        man = manifests[label]
        c2pa = self.catalogue.doc.get("c2pa", {})
        meta = Metadata(where, _pseudo_tags(man, frozenset(c2pa.get("created", ["c2pa.created"]))))
        own = [_edited_by_generator(replace(s, tag=f"{where}: {s.tag}"))
               for s in self.catalogue.match(meta, "c2pa")]
        own += [replace(s, tag=f"{where}: {s.tag}") for s in self._assertion_records(man)]
        found = list(own)
        parents: list[tuple[dict[str, Any], list[Signal]]] = []
        for ing in man.get("ingredients", []):
            rel = ing.get("relationship", "componentOf")
            title = ing.get("title", "?")
            sub = self._manifest_signals(manifests, ing.get("active_manifest"),
                                         f"ingredient '{title}' ({rel})", seen)
            parents.append((ing, sub))
            for s in sub:
                if s.kind == "human":
                    continue  # a human ingredient says nothing about the whole
                if s.kind == "ai_generated" and _AI_TO_INGREDIENT.get(rel):
                    s = replace(s, kind=_AI_TO_INGREDIENT[rel],
                                meaning=f"generated ingredient placed in this file: {s.meaning}")
                found.append(s)
        if where == "active manifest":
            capture = self._capture_parent(man, own, parents, manifests, c2pa)
            if capture is not None:
                found.append(capture)
        return found

    def _assertion_records(self, man: dict[str, Any]) -> list[Signal]:
        """Generation records in the manifest's own assertions and action parameters (a
        vendor assertion holding a prompt and model settings), by the catalogue's shapes."""
        found: list[Signal] = []
        for a in man.get("assertions", [])[:64]:
            label = str(a.get("label", ""))
            if label.startswith(_NOT_RECORDS):
                continue
            found += self.catalogue.match_object(a.get("data"), f"C2PA:{label}", "c2pa")
        for i, act in enumerate(_actions(man)[:32]):
            params = act.get("parameters")
            if isinstance(params, dict) and params:
                found += self.catalogue.match_object(
                    params, f"C2PA:{act.get('action', 'action')}.parameters[{i}]", "c2pa")
        return found

    def _capture_parent(self, man: dict[str, Any], own: list[Signal],
                        parents: list[tuple[dict[str, Any], list[Signal]]],
                        manifests: dict[str, Any], c2pa: dict[str, Any]) -> Signal | None:
        """``human`` for a file whose only ingredient is its parent, a signed capture (its
        manifest declares a capture source type and holds no AI claim), and whose own actions
        are all non-generative (open, transcode, trim, republish), with no source type of its
        own and no generator named: provenance says people captured what it shows."""
        if len(parents) != 1 or parents[0][0].get("relationship") != "parentOf":
            return None
        if any(s.kind in AI_KINDS or s.marker == "digital-source-type" for s in own):
            return None  # its own declaration (or a generator it names) decides
        allowed = set(c2pa.get("non_generative", ()))
        actions = [str(a.get("action")) for a in _actions(man)]
        if not actions or any(a not in allowed for a in actions):
            return None
        ing, sub = parents[0]
        parent = manifests.get(ing.get("active_manifest") or "")
        if parent is None or any(s.kind in AI_KINDS for s in sub):
            return None
        codes = [hit[0] for a in _actions(parent)
                 if (hit := self.catalogue.source_type(str(a.get("digitalSourceType") or "")))]
        captured = [c for c in codes if c in set(c2pa.get("capture_codes", ()))]
        if not captured or len(captured) != len(codes):
            return None
        return Signal("human", f"its only parent is a signed capture ({captured[0]}) and its own "
                      f"actions are non-generative ({', '.join(dict.fromkeys(actions))})",
                      "c2pa", f"active manifest: parent ingredient '{ing.get('title', '?')}'",
                      ", ".join(actions), "capture-parent")


# ExifTool 12.57 decodes JUMBF in these containers (SIGNALS.md 3.3): without c2pa-python, its
# word on them is all there is (elsewhere the state is "not_checked").
_EXIFTOOL_SEES_C2PA = frozenset({"JPEG", "PNG", "JXL", "JP2"})
# Media types whose embedded manifest store is stored raw (a JPEG APP11 segment, a PNG caBX
# chunk, a BMFF uuid box, a RIFF chunk, a TIFF tag), so its JUMBF label "c2pa" (or the RIFF
# chunk id "C2PA") is in the file's bytes: a small file read whole without them holds no
# manifest, and c2pa-python (0.1-3 ms a file) is spared. By media type, not ExifTool's file
# type, which names variants ("Extended WEBP" for every WebP with metadata or alpha). Not PDF
# (object streams may be compressed), MP3 (ID3 frames may be) nor JPEG XL (brob boxes).
BYTES_SETTLE_C2PA = frozenset({
    "image/jpeg", "image/png", "image/tiff", "image/webp", "image/heic", "image/heif",
    "image/avif", "video/mp4", "video/quicktime", "video/x-m4v", "audio/mp4", "audio/x-wav",
    "audio/wav", "audio/vnd.wave", "video/x-msvideo", "video/avi"})


def _failure_codes(store: dict[str, Any]) -> list[str]:
    results = store.get("validation_results") or {}
    items = list((results.get("activeManifest") or {}).get("failure", []))
    if not results:
        items = [s for s in store.get("validation_status", []) if "code" in s]
    return list(dict.fromkeys(i["code"] for i in items if "code" in i))


def _actions(man: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for a in man.get("assertions", []):
        if str(a.get("label", "")).startswith("c2pa.actions"):
            body = a.get("data", {})
            out.extend(body.get("actions", []))
            out.extend(body.get("templates", []))
    return out


def _agent(action: dict[str, Any]) -> str | None:
    agent = action.get("softwareAgent")
    if isinstance(agent, dict):
        return agent.get("name")
    return agent


def _edited_by_generator(s: Signal) -> Signal:
    """A generator named as the software agent of an action other than creating the file
    edited it: generated parts in a file it did not make."""
    if s.kind == "ai_generated" and s.tag.endswith(_EDIT_AGENT):
        return replace(s, kind="ai_composite",
                       meaning=f"a generator ({s.value}) named as the software agent of an edit, "
                               "not of the file's creation: generated parts in it")
    return s


def _pseudo_tags(man: dict[str, Any], created: frozenset[str]) -> dict[str, Any]:
    """A manifest as the ExifTool tag names the catalogue knows, so one catalogue serves both.
    The agents of the actions that create the file and of those that edit it are kept apart."""
    acts = _actions(man)
    dst = [a.get("digitalSourceType") for a in acts]
    dst += [(a.get("parameters") or {}).get("com.adobe.digitalSourceType") for a in acts]
    tags: dict[str, Any] = {
        "CBOR:ActionsDigitalSourceType": [d for d in dst if d],
        "CBOR:ActionsSoftwareAgent": [g for a in acts if a.get("action") in created
                                      and (g := _agent(a))],
        _EDIT_AGENT: [g for a in acts if a.get("action") not in created and (g := _agent(a))],
        "CBOR:ActionsDescription": [a.get("description") for a in acts if a.get("description")],
        "CBOR:ActionsParametersDescription": [(a.get("parameters") or {}).get("description")
                                              for a in acts
                                              if (a.get("parameters") or {}).get("description")],
        "CBOR:Claim_generator": man.get("claim_generator") or "",
        "CBOR:Claim_Generator_InfoName": [i.get("name") for i in man.get("claim_generator_info", [])
                                          if isinstance(i, dict) and i.get("name")],
    }
    return {k: v for k, v in tags.items() if v}


def _summary(man: dict[str, Any]) -> dict[str, Any]:
    sig = man.get("signature_info") or {}
    gen = man.get("claim_generator") or ", ".join(
        i.get("name", "") for i in man.get("claim_generator_info", []) if isinstance(i, dict))
    return {
        "claim_generator": gen or None,
        "signer": {"issuer": sig.get("issuer"), "common_name": sig.get("common_name")},
        "signing_time": sig.get("time"),
        "actions": [{"action": a.get("action"), "digitalSourceType": a.get("digitalSourceType"),
                     "softwareAgent": _agent(a)} for a in _actions(man)],
    }


def _ingredient_tree(manifests: dict[str, Any], label: str | None, seen: set[str]) -> list[Any]:
    if not label or label in seen or label not in manifests:
        return []
    seen.add(label)
    return [{"title": i.get("title"), "relationship": i.get("relationship"),
             "ingredients": _ingredient_tree(manifests, i.get("active_manifest"), seen)}
            for i in manifests[label].get("ingredients", [])]
