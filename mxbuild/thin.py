"""Thin clients: a service's MXNet client without native code (the mxnet-thin wheel; room
for a thin jar), published next to the apt repository so that the host's packages decide
the native flavour. One kind per client, found through the plug-in table
(mxbuild/plugins.py, with its smoke suite); a package of the matrix names the kind that
uses it (packages.<name>.client)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import plugins


@dataclass(frozen=True)
class ThinClient:
    kind: str          # the registered kind: python, jvm
    path: Path         # the artifact (wheel, jar)
    version: str       # what a service asks its package manager for
    sha256: str
    extra: tuple[Path, ...] = ()    # files published with it (the jar's pom)


class ThinClientKind:
    name: str = ""

    def make(self, ctx, cell, built: Path) -> ThinClient:
        """The client of `cell`; `built`: the directory the package stage left the cell's
        .debs and client artefacts in (out/debs/<cell>)."""
        raise NotImplementedError

    def publish(self, storage, client: ThinClient) -> bool:
        """Upload and commit its index (compare-and-swap); True if the index changed."""
        raise NotImplementedError

    def is_published(self, storage, client: ThinClient) -> bool:
        raise NotImplementedError


def register(kind: ThinClientKind, suite=None) -> ThinClientKind:
    """Client kinds are code; they register once at import. `suite`: the smoke suite
    (smoke.Suite) of a kind the plug-in table does not list."""
    plugins.register_client(kind, suite)
    return kind


def kinds() -> tuple[str, ...]:
    return plugins.client_names()


def get(name: str) -> ThinClientKind:
    return plugins.client_kind(name)


def for_cell(ctx, cell, built: Path) -> tuple[ThinClient, ...]:
    """The thin clients of the packages the cell ships, in package order."""
    names = dict.fromkeys(p.client for p in cell.packages if p.client)
    return tuple(get(name).make(ctx, cell, built) for name in names)
