"""Repository signing with the gpg CLI: a project key made on first use.

A Signer signs with one key or, during a key rotation, with several at once: InRelease and
Release.gpg then carry one signature per key, and a host whose keyring holds any of them
accepts the file (as apt does with Debian's own archive).

gpg starts a gpg-agent daemon per GnuPG home on the first secret-key operation (and on an
import). An agent that this process started is stopped when its Signer is closed (or by
stop_agents(), which the entry point calls on the way out); an agent that was running
before (a user's own) is left alone.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import SigningError
from ..log import log

KEY_UID = "mxbuild apt repository <mxbuild@localhost>"
KEYRING_NAME = "mxbuild-archive-keyring.gpg"


@dataclass(frozen=True)
class KeyInfo:
    """A public key as a keyring lists it."""
    fingerprint: str
    created: dt.datetime
    expires: dt.datetime | None      # None: never
    uid: str = ""

    def expired(self, now: dt.datetime) -> bool:
        return self.expires is not None and self.expires <= now

    def describe(self) -> str:
        until = f"expires {self.expires:%Y-%m-%d}" if self.expires else "no expiry"
        return f"{self.fingerprint} ({self.uid or 'no user id'}, {until})"


def _when(field: str) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(int(field), dt.timezone.utc) if field else None


def parse_key_listing(colons: str) -> list[KeyInfo]:
    """Primary keys of `gpg --with-colons` output (pub or sec records)."""
    keys, pending = [], None
    for line in colons.splitlines():
        f = line.split(":")
        if f[0] in ("pub", "sec"):
            pending = {"created": _when(f[5]), "expires": _when(f[6]), "uid": "", "fpr": None}
            keys.append(pending)
        elif f[0] == "fpr" and pending is not None and pending["fpr"] is None:
            pending["fpr"] = f[9]
        elif f[0] == "uid" and pending is not None and not pending["uid"]:
            pending["uid"] = f[9]
        elif f[0] in ("sub", "ssb"):
            pending = None if pending is None or pending["fpr"] else pending
    return [KeyInfo(k["fpr"], k["created"], k["expires"], k["uid"]) for k in keys if k["fpr"]]


def keyring_keys(keyring: bytes, where: str = "keyring") -> list[KeyInfo]:
    """The keys of a binary (or armored) public keyring; SigningError if it holds none."""
    keys = list(_keys_of_keyring(keyring))
    if not keys:
        raise SigningError(f"{where} is not an OpenPGP keyring (no public key could be read "
                           "from it)",
                           "give the repository's public keyring, as exported by mxbuild "
                           f"({KEYRING_NAME}, binary, e.g. `gpg --export FPR > {KEYRING_NAME}`)")
    return keys


# GnuPG home -> True if this process started its agent (checked before the first gpg call
# on that home); shared by every Signer of the home (with_keys makes new ones)
_agents: dict[str, bool] = {}
_agents_guard = threading.Lock()


def _agent_socket(home: Path) -> str:
    """Where the gpg-agent of `home` listens (gpg's answer; '' if gpgconf says nothing)."""
    return subprocess.run(["gpgconf", "--homedir", str(home), "--list-dirs", "agent-socket"],
                          capture_output=True, text=True).stdout.strip()


def _agent_running(home: Path) -> bool:
    """Does a gpg-agent answer on the home's socket? (Asked without starting one.)"""
    path = _agent_socket(home)
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(path)
            return True
        except OSError:
            return False


# a Unix socket's path holds at most 107 bytes (sun_path); gpg-agent puts its sockets
# (S.gpg-agent, .extra, .browser, .ssh) in the GnuPG home unless /run/user/<uid> exists
_SOCKET_PATH_MAX = 107


def _agent_socket_too_long(home: Path) -> str | None:
    """The agent's longest socket path when it cannot fit, else None."""
    path = _agent_socket(home)
    longest = path + ".browser"
    return longest if path and len(os.fsencode(longest)) > _SOCKET_PATH_MAX else None


def _note_agent(home: Path) -> None:
    """Before a gpg call on `home`: remember whether the agent it may start is ours."""
    key = str(Path(home).resolve())
    with _agents_guard:
        if key not in _agents:
            _agents[key] = not _agent_running(home)


def stop_agent(home: Path) -> None:
    """Stop the gpg-agent (and any other GnuPG daemon) of `home` if this process started
    it; the next gpg call starts a fresh one."""
    key = str(Path(home).resolve())
    with _agents_guard:
        ours = _agents.pop(key, False)
    if ours:
        subprocess.run(["gpgconf", "--homedir", key, "--kill", "all"], capture_output=True)


def stop_agents() -> None:
    """Stop every gpg-agent this process started."""
    with _agents_guard:
        homes = list(_agents)
    for home in homes:
        stop_agent(Path(home))


# GnuPG home -> (its key files' state, its secret keys) as last listed
_secret_listings: dict[str, tuple[tuple, tuple[KeyInfo, ...]]] = {}
# what a key listing is read from: a key generated, imported, deleted or given a new expiry
# rewrites one of them (gpg replaces the keybox by a rename, so its inode changes too)
_KEY_FILES = ("pubring.kbx", "pubring.gpg", "public-keys.d/pubring.db", "private-keys-v1.d")


def _key_files_state(home: Path) -> tuple:
    state = []
    for name in _KEY_FILES:
        try:
            st = (Path(home) / name).stat()
        except FileNotFoundError:
            state.append(None)
            continue
        state.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(state)


@contextlib.contextmanager
def scratch_home() -> Iterator[str]:
    """A throwaway GnuPG home; its agent (an --import starts one) is stopped with it."""
    with tempfile.TemporaryDirectory() as home:
        try:
            yield home
        finally:
            subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True)


class Signer:
    """Signs with the keys of a GnuPG home. Use as a context manager (or call close()):
    the gpg-agent its gpg calls started is stopped at the end."""

    def __init__(self, gnupg_home: Path, fingerprint: str | None = None,
                 fingerprints: tuple[str, ...] | None = None):
        self.home = gnupg_home
        self._fpr = fingerprint or os.environ.get("MXBUILD_SIGNING_KEY") or None
        # every key that signs (a rotation signs with old and new); None: just `fingerprint`
        self._fprs = tuple(fingerprints) if fingerprints else None
        self.explicit = self._fpr is not None

    def with_keys(self, fingerprints) -> "Signer":
        """The same GnuPG home, signing with exactly these keys (first one: the primary)."""
        fprs = tuple(fingerprints)
        return Signer(self.home, fprs[0], fprs)

    def close(self) -> None:
        """Stop the home's gpg-agent if this process started it (whichever Signer of the
        home ran gpg first); using the Signer afterwards starts a new one."""
        stop_agent(self.home)

    def __enter__(self) -> "Signer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def fingerprints(self) -> tuple[str, ...]:
        return self._fprs or (self.fingerprint,)

    def _users(self) -> list[str]:
        out = []
        for fpr in self.fingerprints:
            out += ["--local-user", f"{fpr}!"]      # '!': exactly this key, no subkey choice
        return out

    def _gpg(self, *args: str, data: bytes | None = None) -> bytes:
        cmd = ["gpg", "--batch", "--quiet", "--no-tty", "--homedir", str(self.home), *args]
        _note_agent(self.home)
        proc = subprocess.run(cmd, input=data, capture_output=True)
        if proc.returncode != 0:
            too_long = b"agent" in proc.stderr and _agent_socket_too_long(self.home)
            if too_long:
                raise SigningError(
                    f"gpg-agent cannot start for the GnuPG home {self.home}: its socket path "
                    f"{too_long} is {len(os.fsencode(too_long))} bytes, more than a Unix "
                    f"socket allows ({_SOCKET_PATH_MAX})",
                    "use a GnuPG home with a shorter path (MXBUILD_GNUPGHOME, e.g. "
                    "/tmp/mxbuild-gnupg)")
            raise SigningError(f"`gpg {' '.join(args[:2])}` failed: "
                               f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
        return proc.stdout

    @property
    def fingerprint(self) -> str:
        if self._fpr is None:
            self._fpr = self._ensure_key()
        return self._fpr

    def secret_keys(self) -> list[KeyInfo]:
        """The secret keys of the GnuPG home, oldest first (none if there is no home).
        Listed again only when the home's key files changed (a publish asks several times)."""
        if not self.home.is_dir():
            return []
        key, state = str(Path(self.home).resolve()), _key_files_state(self.home)
        cached = _secret_listings.get(key)
        if cached is None or cached[0] != state:
            listing = self._gpg("--with-colons", "--list-secret-keys").decode()
            cached = _secret_listings[key] = (state, tuple(parse_key_listing(listing)))
        return list(cached[1])

    def _secret_fprs(self) -> list[str]:
        return [k.fingerprint for k in self.secret_keys()]

    def has_secret(self, fingerprint: str) -> bool:
        return fingerprint.upper() in {f.upper() for f in self._secret_fprs()}

    def _default_fpr(self) -> str | None:
        """The newest secret key that has not expired (after a rotation: the new key)."""
        now = dt.datetime.now(dt.timezone.utc)
        usable = [k for k in self.secret_keys() if not k.expired(now)]
        return max(usable, key=lambda k: k.created).fingerprint if usable else None

    def _ensure_key(self) -> str:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.home, 0o700)
        fpr = self._default_fpr()
        if fpr:
            return fpr
        log.info("generating the repository signing key in %s (first use)", self.home)
        return self.generate_key()

    def generate_key(self, expire: str = "never") -> str:
        """A new signing key in the GnuPG home (RSA 4096: xenial's gpgv 1.4 cannot verify
        ed25519 signatures); returns its fingerprint."""
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.home, 0o700)
        before = set(self._secret_fprs())
        # --yes: a rotation makes a second key with the same user id
        self._gpg("--yes", "--passphrase", "", "--quick-gen-key", KEY_UID, "rsa4096", "sign",
                  expire)
        new = [f for f in self._secret_fprs() if f not in before]
        if not new:
            raise SigningError(f"no new secret key in {self.home} after generating one")
        return new[0]

    def key_info(self, fingerprint: str) -> KeyInfo | None:
        return next((k for k in self.secret_keys()
                     if k.fingerprint.upper() == fingerprint.upper()), None)

    def clearsign(self, text: str) -> bytes:
        return self._gpg(*self._users(), "--digest-algo", "SHA512", "--clearsign",
                         data=text.encode())

    def detach_sign(self, text: str) -> bytes:
        return self._gpg(*self._users(), "--digest-algo", "SHA512", "--armor",
                         "--detach-sign", data=text.encode())

    def public_keyring(self) -> bytes:
        """Binary keyring (what apt's signed-by expects on every apt version): of the keys
        this signer signs with or, when none was chosen (no MXBUILD_SIGNING_KEY), of every
        key in the GnuPG home, so that reading a repository signed by any of them works
        (e.g. another repository that was not rotated yet)."""
        if self._fprs is None and not self.explicit:
            self.fingerprint                        # generated on first use
            return self._gpg("--export", *self._secret_fprs())
        return self._gpg("--export", *self.fingerprints)

    def own_keyring(self) -> bytes:
        """The keyring of exactly the key(s) this signer signs with."""
        return self._gpg("--export", *self.fingerprints)

    def existing_public_keyring(self) -> bytes | None:
        """The public key if a signing key exists already; never generates one."""
        if self._fpr is None:
            self._fpr = self._default_fpr()
            if self._fpr is None:
                return None
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


def check_detached(data: bytes, signature: bytes, keyring: bytes) -> Verified:
    proc = _gpgv(keyring, ["--status-fd", "2", "signature", "data"],
                 files={"signature": signature, "data": data})
    return _read_status(proc, "")


def verify_detached(data: bytes, signature: bytes, keyring: bytes) -> bool:
    """Does `signature` (Release.gpg) sign `data` (Release) with a key of the keyring?"""
    return check_detached(data, signature, keyring).ok


@dataclass(frozen=True)
class Verified:
    """What gpgv said about a signed file, read as apt reads it: good if at least one
    signature is good and none is bad; signatures by keys outside the keyring do not count."""
    text: str
    good: frozenset[str]        # fingerprints of the keys whose signature is good
    unknown: frozenset[str]     # fingerprints (or long key ids) of keys not in the keyring
    bad: frozenset[str]         # bad signatures, expired or revoked keys
    complaint: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.good) and not self.bad

    @property
    def signers(self) -> frozenset[str]:
        return self.good | self.unknown


def _read_status(proc: subprocess.CompletedProcess, text: str) -> Verified:
    good, unknown, bad = set(), set(), set()
    for line in proc.stderr.decode(errors="replace").splitlines():
        if not line.startswith("[GNUPG:] "):
            continue
        f = line.split()[1:]
        if f[0] == "VALIDSIG":
            good.add(f[-1])                       # the primary key's fingerprint
        elif f[0] == "ERRSIG" and len(f) > 6 and f[6] == "9":
            unknown.add(f[7] if len(f) > 7 and f[7] != "-" else f[1])   # NO_PUBKEY
        elif f[0] in ("BADSIG", "EXPKEYSIG", "REVKEYSIG", "EXPSIG"):
            bad.add(f"{f[0]} {f[1]}")
        elif f[0] == "ERRSIG":
            bad.add(f"ERRSIG {f[1]}")
    complaint = "\n".join(l for l in proc.stderr.decode(errors="replace").splitlines()
                          if not l.startswith("[GNUPG:]")).strip()[-400:]
    return Verified(text, frozenset(good), frozenset(unknown), frozenset(bad), complaint)


def check_clearsigned(data: bytes, keyring: bytes) -> Verified:
    """gpgv's verdict on a clearsigned file (InRelease) against a keyring."""
    proc = _gpgv(keyring, ["--status-fd", "2", "--output", "-"], data=data)
    return _read_status(proc, proc.stdout.decode(errors="replace"))


def verify_clearsigned(data: bytes, keyring: bytes) -> str:
    """Check an InRelease against a keyring with gpgv; return the signed text."""
    return verify_inrelease(data, keyring).text


def verify_inrelease(data: bytes, keyring: bytes) -> Verified:
    verified = check_clearsigned(data, keyring)
    if not verified.ok:
        raise SigningError("InRelease signature does not verify against the repository key: "
                           + (verified.complaint or ", ".join(sorted(verified.bad))
                              or "no good signature"),
                           "the repository was signed by another key or tampered with")
    return verified


# A pure function of the bytes, read once per process: a publish reads the repository's
# keyring several times and `verify` once per audit record (each read was a gpg import in a
# scratch home and the stop of its daemons: five processes).
@functools.lru_cache(maxsize=16)
def _keys_of_keyring(keyring: bytes) -> tuple[KeyInfo, ...]:
    with scratch_home() as home:
        proc = subprocess.run(["gpg", "--homedir", home, "--batch", "--quiet", "--with-colons",
                               "--import-options", "show-only", "--import"],
                              input=keyring, capture_output=True)
    return tuple(parse_key_listing(proc.stdout.decode(errors="replace"))
                 if proc.returncode == 0 else ())


def keyring_from_armored(keys: bytes) -> bytes:
    """A binary keyring (what gpgv reads) from armored public keys, e.g. Apache's KEYS."""
    with scratch_home() as home:
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
