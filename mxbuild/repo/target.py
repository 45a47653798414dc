"""Where a repository lives: a local directory or s3://BUCKET/PREFIX."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

from .s3 import S3Storage, S3Target
from .storage import LocalStorage


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None = None
    region: str | None = None
    path_style: bool = False
    sse: str | None = None
    sse_kms_key_id: str | None = None
    pool_retention_days: int | None = None


def open_storage(location: str | Path, s3: S3Options = S3Options(), check_server: bool = True):
    """check_server: S3 only, see S3Storage (off for stores without compare-and-swap)."""
    text = str(location)
    if text.startswith("s3://"):
        return S3Storage(S3Target.parse(text, endpoint_url=s3.endpoint_url, region=s3.region,
                                        path_style=s3.path_style, sse=s3.sse,
                                        sse_kms_key_id=s3.sse_kms_key_id,
                                        pool_retention_days=s3.pool_retention_days),
                         check_server=check_server)
    if text.startswith("file://"):
        text = text[len("file://"):]
    return LocalStorage(Path(text).expanduser().resolve())


def pool_retention_days(environ=os.environ) -> int | None:
    """MXBUILD_POOL_RETENTION_DAYS: S3 Object Lock retention (GOVERNANCE) of new pool files."""
    text = environ.get("MXBUILD_POOL_RETENTION_DAYS", "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"MXBUILD_POOL_RETENTION_DAYS={text!r} is not a number of days",
                          "give a whole number of days ≥ 1, or unset it")
    return int(text)


def public_url(storage) -> str | None:
    """The URL apt uses for an S3 repository; None for a local directory (served locally)."""
    return storage.target.public_url() if isinstance(storage, S3Storage) else None
