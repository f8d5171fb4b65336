#!/usr/bin/env python3
"""Sign sample media with Content Credentials, using a throwaway test CA made here.

    python sample_media/make_c2pa_samples.py

Writes sample_media/c2pa/: a test CA (``test-ca.pem``, public; its key is discarded), and
signed files: an AI-created image, a camera capture, an edit with an AI ingredient, a video and
an audio file, one whose bytes were changed after signing, one whose manifest was stripped
(its XMP provenance pointer kept) and one whose manifest sits in a ``.c2pa`` sidecar.
EXPECTED.json there gives the kind and C2PA state each must get without and with the test CA
in the trust bundle. Needs c2pa-python and cryptography (pip install '.[samples]').
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
OUT = HERE / "c2pa"
DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"


XMP_POINTER = """<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>
<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>
<rdf:Description rdf:about='' xmlns:dcterms='http://purl.org/dc/terms/'>
<dcterms:provenance>self#jumbf=/c2pa/urn:uuid:00000000-0000-0000-0000-000000000000/c2pa.claim\
</dcterms:provenance></rdf:Description></rdf:RDF></x:xmpmeta>
<?xpacket end='w'?>
"""


def test_ca() -> tuple[bytes, bytes, bytes]:
    """(CA certificate PEM, signer chain PEM, signer key PEM); valid for ten years."""
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provgate test CA"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "provgate samples")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provgate test signer"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "provgate samples")])
    leaf = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca.public_bytes(pem), leaf.public_bytes(pem) + ca.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def manifest(title: str, actions: list[dict], generator: str = "provgate-samples") -> dict:
    return {"claim_generator_info": [{"name": generator, "version": "0.1"}], "title": title,
            "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": actions}}]}


# no thumbnails: they would make each sample 130 KB
CONTEXT = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}},
                                  "verify": {"remote_manifest_fetch": False}})


def sign(signer: c2pa.Signer, src: Path, dest: Path, mime: str, man: dict,
         ingredient: tuple[Path, dict] | None = None, sidecar: bool = False) -> None:
    builder = c2pa.Builder(man, context=CONTEXT)
    if ingredient:
        path, ing = ingredient
        with open(path, "rb") as fh:
            builder.add_ingredient(ing, "image/jpeg", fh)
    if sidecar:
        builder.set_no_embed()
    with open(src, "rb") as fin, open(dest, "w+b") as fout:
        data = builder.sign(signer, mime, fin, fout)
    if sidecar:
        shutil.copy2(src, dest)
        Path(str(dest.with_suffix("")) + ".c2pa").write_bytes(data)


def main() -> int:
    ca_pem, chain, key = test_ca()
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    (OUT / "test-ca.pem").write_bytes(ca_pem)
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key,
                                                       None))
    s = HERE
    expected: dict[str, dict[str, str]] = {}

    def add(name: str, kind: str, untrusted: str = "valid_untrusted",
            trusted: str = "valid_trusted") -> Path:
        expected[name] = {"kind": kind, "c2pa": untrusted, "c2pa_with_test_ca": trusted}
        return OUT / name

    created = [{"action": "c2pa.created", "digitalSourceType": DST + "trainedAlgorithmicMedia",
                "softwareAgent": {"name": "ProbeGen Model X"}}]
    sign(signer, s / "unknown_camera.jpg", add("c2pa_ai_created.jpg", "ai_generated"),
         "image/jpeg", manifest("generated", created))
    capture = [{"action": "c2pa.created", "digitalSourceType": DST + "digitalCapture"}]
    sign(signer, s / "unknown_camera.jpg", add("c2pa_camera_capture.jpg", "human"),
         "image/jpeg", manifest("capture", capture, "ARRI Camera Signer"))
    edited = [{"action": "c2pa.created", "digitalSourceType": DST + "digitalCreation"},
              {"action": "c2pa.edited", "softwareAgent": {"name": "Compositor 9"}}]
    sign(signer, s / "unknown_camera.jpg", add("c2pa_edit_ai_ingredient.jpg", "ai_composite"),
         "image/jpeg", manifest("comp", edited),
         ingredient=(OUT / "c2pa_ai_created.jpg",
                     {"title": "generated element", "relationship": "componentOf"}))
    sign(signer, s / "unknown_plate.mov", add("c2pa_ai_video.mov", "ai_generated"),
         "video/quicktime", manifest("video", created))
    sign(signer, s / "unknown_room_tone.wav", add("c2pa_ai_voice.wav", "ai_generated"),
         "audio/wav", manifest("voice", created))
    tampered = add("c2pa_tampered.jpg", "ai_generated", "invalid", "invalid")
    shutil.copy2(OUT / "c2pa_ai_created.jpg", tampered)
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-dc:Title=edited after signing",
                    str(tampered)], check=True)
    stripped = add("c2pa_stripped.jpg", "unknown", "stripped", "stripped")
    shutil.copy2(OUT / "c2pa_camera_capture.jpg", stripped)
    # ExifTool 12.57 cannot write dcterms:provenance by name, but copies a raw XMP packet
    packet = OUT / "provenance.xmp"
    packet.write_text(XMP_POINTER)
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-all=", f"-XMP<={packet}",
                    str(stripped)], check=True)
    packet.unlink()
    remote = add("c2pa_remote.jpg", "unknown", "remote", "remote")
    builder = c2pa.Builder(manifest("remote", created), context=CONTEXT)
    builder.set_no_embed()
    builder.set_remote_url("https://manifests.example.invalid/provgate-sample.c2pa")
    with open(s / "unknown_camera.jpg", "rb") as fin, open(remote, "w+b") as fout:
        builder.sign(signer, "image/jpeg", fin, fout)
    sign(signer, s / "unknown_camera.jpg", add("c2pa_sidecar.jpg", "ai_generated"),
         "image/jpeg", manifest("sidecar", created), sidecar=True)
    (OUT / "EXPECTED.json").write_text(json.dumps(dict(sorted(expected.items())), indent=2) + "\n")
    print(f"make_c2pa_samples: wrote {len(expected)} signed samples to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
