"""pins.lock: every image digest mxbuild builds on, in one file, changed on purpose only.

- bases.<distro>: a bootstrap's inputs (hash), the image it produced (id, rootfs sha256)
  and its package set; or a registry image's digest.
- toolkits.<name:tag>: the digest of a CUDA toolkit image the compile recipe uses.

Builds only read it: they verify what they use against it and report drift by name (the
packages whose versions changed). `invoke lock` is the one writer.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

PINS_FORMAT = 1


@dataclass(frozen=True)
class Pins:
    path: Path
    bases: dict[str, dict] = field(default_factory=dict)
    toolkits: dict[str, str] = field(default_factory=dict)   # name:tag -> sha256:…

    @classmethod
    def load(cls, path: Path) -> "Pins":
        if not path.exists():
            return cls(path)
        try:
            doc = json.loads(path.read_text())
        except ValueError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc})",
                              "restore it from git, or re-create it with `invoke lock`")
        if doc.get("format") != PINS_FORMAT:
            raise ConfigError(f"{path} has format {doc.get('format')!r}, this mxbuild reads "
                              f"{PINS_FORMAT}", "re-create it with `invoke lock`")
        return cls(path, doc.get("bases", {}), doc.get("toolkits", {}))

    def base(self, distro: str) -> dict | None:
        return self.bases.get(distro)

    def toolkit_ref(self, image: str) -> str | None:
        """name:tag@sha256:… for a pinned toolkit image, else None."""
        digest = self.toolkits.get(image)
        return f"{image}@{digest}" if digest else None

    def with_base(self, distro: str, entry: dict) -> "Pins":
        return Pins(self.path, {**self.bases, distro: entry}, self.toolkits)

    def with_toolkit(self, image: str, digest: str) -> "Pins":
        return Pins(self.path, self.bases, {**self.toolkits, image: digest})

    def write(self) -> None:
        doc = {"format": PINS_FORMAT,
               "comment": "written by `invoke lock`; builds verify against it",
               "bases": dict(sorted(self.bases.items())),
               "toolkits": dict(sorted(self.toolkits.items()))}
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        tmp.replace(self.path)
