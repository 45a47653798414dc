"""Run options, resolved once from flags and environment into a frozen dataclass."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .repo.target import S3Options

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Options:
    root: Path              # the project checkout (data folders live here)
    matrix_path: Path
    out_dir: Path           # everything a run produces: repo, logs, reports, debs
    cache_dir: Path         # content-addressed downloads and stage caches
    gnupg_home: Path        # the repository signing key; never inside the checkout's git
    extra_ca_bundle: Path | None  # trusted inside build containers only, never shipped
    pins_path: Path         # pins.lock: image digests, written by `invoke lock` only
    source_date_epoch: int
    # recipe "compile"
    source_tarball: Path | None = None   # instead of downloading the pinned release
    source_dir: Path | None = None       # an unpacked tree (not checked against a pin)
    ccache_volume: str = "mxbuild-ccache"
    # the JVM half from source: Maven's local repository of the scala-package builds
    m2_volume: str = "mxbuild-m2"
    staging: bool = False                # publish to <codename>-staging (release CI)
    # stages never served from the stage cache: --force ("all") / --force-stage NAME
    force: frozenset[str] = frozenset()
    compile_jobs: int = os.cpu_count() or 2
    # stage outputs shared between machines (s3://BUCKET/PREFIX or a directory), or None
    artifact_cache: str | None = None
    artifact_s3: "S3Options | None" = None   # endpoint etc. when it is on S3

    @property
    def repo_dir(self) -> Path:
        return self.out_dir / "repo"

    @property
    def logs_dir(self) -> Path:
        return self.out_dir / "logs"

    @property
    def work_dir(self) -> Path:
        return self.out_dir / "work"


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def resolve(out_dir: str | None = None, matrix: str | None = None,
            ca_bundle: str | None = None, gnupg_home: str | None = None,
            source_tarball: str | None = None, source_dir: str | None = None) -> Options:
    root = PROJECT_ROOT
    data_home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share"))
    out = Path(out_dir).resolve() if out_dir else _env_path("MXBUILD_OUT_DIR", root / "out")
    ca_setting = ca_bundle if ca_bundle is not None else os.environ.get("MXBUILD_CA_BUNDLE")
    if ca_setting in ("none", ""):
        extra_ca = None
    elif ca_setting:
        extra_ca = Path(ca_setting).expanduser().resolve()
        if not extra_ca.is_file():
            raise ConfigError(f"extra CA bundle {extra_ca} does not exist",
                              "point MXBUILD_CA_BUNDLE / --ca-bundle at a PEM file, or 'none'")
    else:
        extra_ca = SYSTEM_CA_BUNDLE if SYSTEM_CA_BUNDLE.is_file() else None
    if source_tarball and source_dir:
        raise ConfigError("--source-tarball and --source-dir both given", "pass only one")
    sde = os.environ.get("SOURCE_DATE_EPOCH", "")
    if sde and not sde.isdigit():
        raise ConfigError(f"SOURCE_DATE_EPOCH={sde!r} is not an integer",
                          "unset it or give seconds since 1970")
    return Options(
        root=root,
        matrix_path=Path(matrix).resolve() if matrix else _env_path("MXBUILD_MATRIX",
                                                                   root / "matrix.yaml"),
        out_dir=out,
        cache_dir=_env_path("MXBUILD_CACHE_DIR", root / ".cache" / "mxbuild"),
        gnupg_home=Path(gnupg_home).resolve() if gnupg_home else _env_path(
            "MXBUILD_GNUPGHOME", data_home / "mxbuild" / "gnupg"),
        extra_ca_bundle=extra_ca,
        pins_path=_env_path("MXBUILD_PINS", root / "pins.lock"),
        # Fixed default: the package's own inputs (the wheel's date) drive it in deb.py.
        source_date_epoch=int(sde) if sde else 0,
        source_tarball=Path(source_tarball).expanduser().resolve() if source_tarball else None,
        source_dir=Path(source_dir).expanduser().resolve() if source_dir else None,
        ccache_volume=os.environ.get("MXBUILD_CCACHE_VOLUME", "mxbuild-ccache"),
        m2_volume=os.environ.get("MXBUILD_M2_VOLUME", "mxbuild-m2"),
        artifact_cache=os.environ.get("MXBUILD_ARTIFACT_CACHE") or None,
    )
