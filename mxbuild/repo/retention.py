"""Retention: keep the newest N versions of each package, per suite and component.

Older versions leave the index through the normal compare-and-swap commit (so a concurrent
publish is merged, never lost, and the commit is in the audit log). Their pool files stay
until `repo.clean` finds them unreferenced by every suite (staging and stable alike) for
longer than the grace period, counted from the commit that dropped them.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from debian.debian_support import Version

from ..errors import ConfigError
from . import keys
from .ops import suites
from .publish import CommitOptions, read_packages, read_state, update_suite
from .sign import Signer


@dataclass(frozen=True, order=True)
class Drop:
    suite: str
    component: str
    package: str
    version: str
    filename: str


def parse_keep(text) -> int:
    try:
        keep = int(str(text).strip())
    except ValueError:
        raise ConfigError(f"--keep {text!r} is not a number",
                          "give how many versions of each package to keep, e.g. --keep 5")
    if keep < 1:
        raise ConfigError(f"--keep {keep} would drop every version of every package",
                          "give --keep 1 or more (the newest N versions stay); to drop one "
                          "version use `invoke repo.remove`")
    return keep


def excess(entries: list, keep: int) -> list:
    """Entries beyond the newest `keep` versions of each package (and architecture)."""
    by_package = defaultdict(list)
    for e in entries:
        by_package[(e["Package"], e["Architecture"])].append(e)
    out = []
    for versions in by_package.values():
        versions.sort(key=lambda e: Version(e["Version"]), reverse=True)
        out += versions[keep:]
    return out


def plan(storage, keyring: bytes, keep: int) -> list[Drop]:
    """What `--keep N` would drop from the indexes now."""
    drops = []
    for codename in suites(storage):
        state = read_state(storage, codename, keyring)
        for component in state.components:
            for e in excess(read_packages(storage, state, component), keep):
                drops.append(Drop(codename, component, e["Package"], e["Version"],
                                  e["Filename"]))
    return sorted(drops)


def apply(storage, signer: Signer, keep: int) -> list[str]:
    """Drop the excess versions of every suite (one commit per suite that changes)."""
    signing = keys.signing_for(storage, signer)
    signer, keyring = signing.signer, signing.keyring

    def trim(entries):
        gone = excess(entries, keep)
        return [e for e in entries if e not in gone], gone
    done = []
    for codename in suites(storage):
        state = read_state(storage, codename, keyring)
        changes = {component: trim for component in state.components}
        dropped, _ = update_suite(storage, signer, codename, changes, keyring,
                                  CommitOptions(action=f"retention keep={keep}"))
        done += dropped
    return done
