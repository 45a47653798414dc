"""Where a repository lives: a local directory or s3://BUCKET/PREFIX."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..log import log

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
    cdn_distribution: str | None = None    # CloudFront distribution ID (cdn.py)


def open_storage(location: str | Path, s3: S3Options = S3Options(), check_server: bool = True):
    """check_server: S3 only, see S3Storage (off for stores without compare-and-swap)."""
    text = str(location)
    if text.startswith("s3://"):
        return S3Storage(S3Target.parse(text, endpoint_url=s3.endpoint_url, region=s3.region,
                                        path_style=s3.path_style, sse=s3.sse,
                                        sse_kms_key_id=s3.sse_kms_key_id,
                                        pool_retention_days=s3.pool_retention_days,
                                        cdn_distribution=s3.cdn_distribution),
                         check_server=check_server)
    if s3.cdn_distribution:
        log.warning("CloudFront distribution %s ignored: %s is a local directory (a CDN is "
                    "invalidated only for an S3 repository)", s3.cdn_distribution, text)
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


def cdn_distribution(flag: str | None, environ=os.environ) -> str | None:
    """--cdn, else MXBUILD_CDN_DISTRIBUTION: the CloudFront distribution in front of an S3
    repository, invalidated after each commit (cdn.py)."""
    text = (flag or environ.get("MXBUILD_CDN_DISTRIBUTION", "")).strip()
    if text and not text.isalnum():
        raise ConfigError(f"CloudFront distribution ID {text!r} is malformed",
                          "give the distribution's ID (letters and digits, e.g. "
                          "E2QWRUHAPOMQZL: CloudFront console or `aws cloudfront "
                          "list-distributions`), not its domain name or ARN")
    return text or None


def public_url(storage) -> str | None:
    """The URL apt uses for an S3 repository; None for a local directory (served locally)."""
    return storage.target.public_url() if isinstance(storage, S3Storage) else None
