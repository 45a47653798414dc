"""Repository signing with the gpg CLI: a project key made on first use."""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from ..errors import SigningError
from ..log import log

KEY_UID = "mxbuild apt repository <mxbuild@localhost>"
KEYRING_NAME = "mxbuild-archive-keyring.gpg"


class Signer:
    def __init__(self, gnupg_home: Path, fingerprint: str | None = None):
        self.home = gnupg_home
        self._fpr = fingerprint or os.environ.get("MXBUILD_SIGNING_KEY") or None

    def _gpg(self, *args: str, data: bytes | None = None) -> bytes:
        cmd = ["gpg", "--batch", "--quiet", "--no-tty", "--homedir", str(self.home), *args]
        proc = subprocess.run(cmd, input=data, capture_output=True)
        if proc.returncode != 0:
            raise SigningError(f"`gpg {' '.join(args[:2])}` failed: "
                               f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
        return proc.stdout

    @property
    def fingerprint(self) -> str:
        if self._fpr is None:
            self._fpr = self._ensure_key()
        return self._fpr

    def _secret_fprs(self) -> list[str]:
        out = self._gpg("--with-colons", "--list-secret-keys").decode()
        fprs, expect_fpr = [], False
        for line in out.splitlines():
            if line.startswith("sec:"):
                expect_fpr = True
            elif line.startswith("fpr:") and expect_fpr:
                fprs.append(line.split(":")[9])
                expect_fpr = False
        return fprs

    def _ensure_key(self) -> str:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.home, 0o700)
        fprs = self._secret_fprs()
        if fprs:
            return fprs[0]
        log.info("generating the repository signing key in %s (first use)", self.home)
        # RSA: xenial's gpgv (1.4) cannot verify ed25519 signatures.
        self._gpg("--passphrase", "", "--quick-gen-key", KEY_UID, "rsa4096", "sign", "never")
        fprs = self._secret_fprs()
        if not fprs:
            raise SigningError(f"no secret key in {self.home} after generating one")
        return fprs[0]

    def clearsign(self, text: str) -> bytes:
        return self._gpg("--local-user", self.fingerprint, "--digest-algo", "SHA512",
                         "--clearsign", data=text.encode())

    def detach_sign(self, text: str) -> bytes:
        return self._gpg("--local-user", self.fingerprint, "--digest-algo", "SHA512",
                         "--armor", "--detach-sign", data=text.encode())

    def public_keyring(self) -> bytes:
        """Binary keyring (what apt's signed-by expects on every apt version)."""
        return self._gpg("--export", self.fingerprint)

    def existing_public_keyring(self) -> bytes | None:
        """The public key if a signing key exists already; never generates one."""
        if self._fpr is None:
            if not self.home.is_dir():
                return None
            fprs = self._secret_fprs()
            if not fprs:
                return None
            self._fpr = fprs[0]
        return self.public_keyring()


def _gpgv(keyring: bytes, args: list[str], data: bytes | None = None,
          files: dict[str, bytes] | None = None) -> subprocess.CompletedProcess:
    """gpgv against a keyring given as bytes (apt's view: only that key counts)."""
    with tempfile.TemporaryDirectory() as tmp:
        ring = Path(tmp) / "keyring.gpg"
        ring.write_bytes(keyring)
        for name, content in (files or {}).items():
            (Path(tmp) / name).write_bytes(content)
        return subprocess.run(["gpgv", "--keyring", str(ring), *args], input=data,
                              capture_output=True, cwd=tmp)


def verify_detached(data: bytes, signature: bytes, keyring: bytes) -> bool:
    """Does `signature` (Release.gpg) sign `data` (Release) with a key of the keyring?"""
    return _gpgv(keyring, ["signature", "data"],
                 files={"signature": signature, "data": data}).returncode == 0


def verify_clearsigned(data: bytes, keyring: bytes) -> str:
    """Check an InRelease against a keyring with gpgv; return the signed text."""
    proc = _gpgv(keyring, ["--output", "-"], data=data)
    if proc.returncode != 0:
        raise SigningError("InRelease signature does not verify against the repository key: "
                           + proc.stderr.decode(errors="replace").strip()[-400:],
                           "the repository was signed by another key or tampered with")
    return proc.stdout.decode()


def keyring_from_armored(keys: bytes) -> bytes:
    """A binary keyring (what gpgv reads) from armored public keys, e.g. Apache's KEYS."""
    with tempfile.TemporaryDirectory() as home:
        gpg = ["gpg", "--homedir", home, "--batch", "--quiet"]
        imported = subprocess.run([*gpg, "--import"], input=keys, capture_output=True)
        exported = subprocess.run([*gpg, "--export"], capture_output=True)
    if imported.returncode != 0 or not exported.stdout:
        raise SigningError("no OpenPGP public key could be read from the KEYS file: "
                           + imported.stderr.decode(errors="replace").strip()[-300:],
                           "check the KEYS URL/file in matrix.yaml (sources.<version>.keys)")
    return exported.stdout


def verify_detached_file(path: Path, signature: bytes, keyring: bytes) -> str | None:
    """Check a detached signature (.asc) of a file on disk; return gpgv's complaint, or
    None when it verifies."""
    with tempfile.TemporaryDirectory() as tmp:
        ring, sig = Path(tmp) / "keyring.gpg", Path(tmp) / "file.asc"
        ring.write_bytes(keyring)
        sig.write_bytes(signature)
        proc = subprocess.run(["gpgv", "--keyring", str(ring), str(sig), str(path)],
                              capture_output=True)
    return None if proc.returncode == 0 else proc.stderr.decode(errors="replace").strip()[-400:]
