"""A Java truststore (JKS) from PEM certificates, for Maven inside a build container: JDK 8
cannot read a PEM bundle, and behind a TLS-intercepting proxy (the extra CA bundle,
MXBUILD_CA_BUNDLE) Maven Central is reachable only when its CA is trusted. Written here in
a few lines instead of one `keytool -importcert` per certificate.

JKS (what every JDK since 1.2 reads): magic 0xFEEDFEED, version 2, the entry count, per
entry tag 2 (trusted certificate), alias, timestamp (ms), "X.509", DER length + bytes; then
SHA-1 over the password as UTF-16BE, the words "Mighty Aphrodite" and all the bytes before.
"""
from __future__ import annotations

import hashlib
import re
import ssl
import struct

PASSWORD = "changeit"      # a truststore holds no secret; the JDK's default password
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def pem_certificates(*texts: str) -> list[bytes]:
    """The DER bytes of every certificate in the PEM texts, each once, in order."""
    out, seen = [], set()
    for text in texts:
        for block in _PEM.findall(text):
            der = ssl.PEM_cert_to_DER_cert(block)
            if der not in seen:
                seen.add(der)
                out.append(der)
    return out


def _utf(text: str) -> bytes:
    data = text.encode("utf-8")          # aliases and "X.509" are ASCII: no modified UTF-8
    return struct.pack(">H", len(data)) + data


def jks(certificates: list[bytes], password: str = PASSWORD, timestamp_ms: int = 0) -> bytes:
    """A JKS keystore holding `certificates` (DER) as trusted entries, aliased by their
    sha256; the same certificates give the same bytes."""
    body = bytearray(struct.pack(">III", 0xFEEDFEED, 2, len(certificates)))
    for der in certificates:
        body += struct.pack(">I", 2) + _utf(f"mxbuild-{hashlib.sha256(der).hexdigest()[:20]}")
        body += struct.pack(">Q", timestamp_ms) + _utf("X.509")
        body += struct.pack(">I", len(der)) + der
    digest = hashlib.sha1(password.encode("utf-16-be") + b"Mighty Aphrodite" + bytes(body))
    return bytes(body) + digest.digest()
