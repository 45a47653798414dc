"""Which keys sign a repository, and rotating them without breaking hosts.

The repository's public keyring (`mxbuild-archive-keyring.gpg` next to `dists/`) names its
signing keys. Every publish signs with all of them, so during a rotation InRelease and
Release.gpg carry a signature of the old and of the new key: a host that still holds only
the old keyring keeps updating, a host with the new keyring (both keys) too. Retiring the
old key re-signs every suite with the remaining keys; only then do old-keyring hosts fail.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..errors import ConfigError, SigningError
from ..log import log
from .sign import KEYRING_NAME, KeyInfo, Signer, keyring_keys

WARN_DAYS = 90


@dataclass(frozen=True)
class RepoSigning:
    """The signer bound to a repository's keys and the keyring its states verify with."""
    signer: Signer
    keyring: bytes
    published: bool            # the keyring is in the repository already


def repository_keys(storage) -> tuple[bytes, list[KeyInfo]] | None:
    got = storage.get(KEYRING_NAME)
    if got is None:
        return None
    return got[0], keyring_keys(got[0], f"{storage.describe()}/{KEYRING_NAME}")


def check_expiry(signer: Signer, now: dt.datetime | None = None) -> None:
    """Refuse a signing key that has expired; warn when one expires within 90 days."""
    now = now or dt.datetime.now(dt.timezone.utc)
    for fpr in signer.fingerprints:
        info = signer.key_info(fpr)
        if info is None or info.expires is None:
            continue
        if info.expired(now):
            raise SigningError(
                f"signing key {fpr} expired on {info.expires:%Y-%m-%d}: apt refuses its "
                "signatures (EXPKEYSIG), so nothing was published",
                "rotate to a new key (`invoke repo.rotate-key --repo …`, then `--retire "
                f"{fpr}` once hosts have the new keyring); or extend it (`gpg --homedir "
                f"{signer.home} --quick-set-expire {fpr} 2y`) and give hosts the re-exported "
                "keyring")
        days = (info.expires - now).total_seconds() / 86400
        if days < WARN_DAYS:
            log.warning("signing key %s expires on %s (in %d days): rotate now "
                        "(`invoke repo.rotate-key`) so hosts receive the new keyring during "
                        "the overlap", fpr, f"{info.expires:%Y-%m-%d}", int(days))


def _require_secrets(signer: Signer, fprs: list[str], where: str) -> None:
    missing = [f for f in fprs if not signer.has_secret(f)]
    if missing:
        raise SigningError(
            f"{where} is signed by {', '.join(missing)}, whose secret key is not in "
            f"{signer.home}",
            "import every key of the repository's keyring into MXBUILD_GNUPGHOME "
            "(`gpg --import secret.asc`); during a rotation both keys are needed")


def signing_for(storage, signer: Signer) -> RepoSigning:
    """The keys that sign this repository: those of its keyring (all of them during a
    rotation), or the signer's own key for a repository that has none yet."""
    found = repository_keys(storage)
    if found is None:
        check_expiry(signer)
        return RepoSigning(signer, signer.own_keyring(), False)
    keyring, keys = found
    fprs = [k.fingerprint for k in keys]
    if signer.explicit and signer.fingerprint.upper() not in {f.upper() for f in fprs}:
        raise SigningError(f"{KEYRING_NAME} in {storage.describe()} holds another key than "
                           f"the signing key in use ({signer.fingerprint})",
                           "sign with the repository's key (MXBUILD_GNUPGHOME / "
                           "MXBUILD_SIGNING_KEY), or publish to a new repository")
    if not any(signer.has_secret(f) for f in fprs):
        raise SigningError(f"{KEYRING_NAME} in {storage.describe()} holds another key than "
                           f"the signing keys in {signer.home}",
                           "sign with the repository's key (MXBUILD_GNUPGHOME / "
                           "MXBUILD_SIGNING_KEY), or publish to a new repository")
    _require_secrets(signer, fprs, storage.describe())
    bound = signer.with_keys(fprs)
    check_expiry(bound)
    return RepoSigning(bound, keyring, True)


def _export(signer: Signer, fprs: list[str]) -> bytes:
    return signer.with_keys(fprs).own_keyring()


def rotate(storage, signer: Signer, new_fpr: str | None = None) -> tuple[str, list[str]]:
    """Add a signing key: publish the keyring with old + new, then re-sign every suite
    with both. Returns (the new key's fingerprint, the suites re-signed)."""
    from .ops import resign_all
    found = repository_keys(storage)
    if found is None:
        raise ConfigError(f"{storage.describe()} has no {KEYRING_NAME}: nothing is published "
                          "there yet", "publish first; a new repository starts with the key "
                          "in MXBUILD_GNUPGHOME")
    old = [k.fingerprint for k in found[1]]
    _require_secrets(signer, old, storage.describe())
    if new_fpr:
        if not signer.has_secret(new_fpr):
            raise SigningError(f"--new-key {new_fpr}: no such secret key in {signer.home}",
                               "import it first (`gpg --import`), or omit --new-key to "
                               "generate one")
        new_fpr = signer.key_info(new_fpr).fingerprint
    else:
        new_fpr = signer.generate_key()
        log.info("generated the new signing key %s in %s", new_fpr, signer.home)
    if new_fpr.upper() in {f.upper() for f in old}:
        raise ConfigError(f"{new_fpr} already signs {storage.describe()}",
                          "give another key with --new-key, or omit it to generate one")
    both = signer.with_keys([*old, new_fpr])
    check_expiry(both)
    keyring = _export(signer, [*old, new_fpr])
    storage.put(KEYRING_NAME, keyring)        # first: a stale publisher re-reads it
    return new_fpr, resign_all(storage, both, keyring, action="rotate-key")


def retire(storage, signer: Signer, old_fpr: str) -> list[str]:
    """End the overlap: the keyring without old_fpr, every suite re-signed without it."""
    from .ops import resign_all
    found = repository_keys(storage)
    if found is None:
        raise ConfigError(f"{storage.describe()} has no {KEYRING_NAME}: nothing to retire",
                          "publish first")
    fprs = [k.fingerprint for k in found[1]]
    match = [f for f in fprs if f.upper().endswith(old_fpr.upper().replace(" ", ""))]
    if len(old_fpr.replace(" ", "")) < 16 or len(match) != 1:
        raise ConfigError(f"--retire {old_fpr}: not a key of {storage.describe()}'s keyring "
                          f"(it holds {', '.join(fprs)})",
                          "give the full fingerprint of one of those keys")
    rest = [f for f in fprs if f != match[0]]
    if not rest:
        raise ConfigError(f"--retire {match[0]}: it is the repository's only signing key; "
                          "retiring it would leave every suite unsigned",
                          "run `invoke repo.rotate-key` first to add the new key, let hosts "
                          "pick up the new keyring, then retire the old one")
    _require_secrets(signer, rest, storage.describe())
    remaining = signer.with_keys(rest)
    check_expiry(remaining)
    keyring = _export(signer, rest)
    storage.put(KEYRING_NAME, keyring)
    return resign_all(storage, remaining, keyring, action="retire-key")
