"""CDN-safe commits: after a command's commits, invalidate on the CloudFront distribution
in front of the bucket exactly the mutable paths they rewrote.

Why this order is safe: apt follows a signed InRelease to by-hash indexes and pool files,
which are never rewritten (Cache-Control immutable), so any InRelease a cache still holds
names files that exist with those bytes. Only the mutable paths (InRelease, Release,
Release.gpg, plain-path indexes, PEP 503 pages, maven-metadata.xml, the keyring) can be
stale, and only until their max-age; invalidating them after the commit (never before: a
fetch in between would cache the old state again) makes the new state visible at once.

Which keys changed is recorded by S3Storage itself (`changed_mutable`: every put,
put_cas and delete of a key whose Cache-Control is mutable), so no commit path needs to
know about the CDN.
"""
from __future__ import annotations

import time
import urllib.parse
from contextlib import contextmanager

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import RepoError
from ..log import log
from .s3 import DENIED_CODES, MUTABLE, S3Storage

# CloudFront accepts at most 3,000 paths in progress per distribution; one commit rewrites
# a few dozen, so batches of this size only matter for a rotate-key over many suites.
BATCH = 1000


def paths(prefix: str, keys) -> list[str]:
    """The invalidation paths of repository keys: URL paths from the distribution's origin,
    which is the bucket (s3://BUCKET/PREFIX/KEY is served at /PREFIX/KEY)."""
    base = f"/{prefix.strip('/')}/" if prefix.strip("/") else "/"
    return sorted(base + urllib.parse.quote(key, safe="/-_.~") for key in set(keys))


def changed_paths(storage) -> list[str]:
    """What the commits made through this storage so far would invalidate."""
    if not isinstance(storage, S3Storage):
        return []
    return paths(storage.target.prefix, storage.changed_mutable)


def invalidate(distribution: str, to_invalidate: list[str], client=None) -> list[str]:
    """CreateInvalidation for these paths; returns the invalidation IDs. Errors say that
    the commit itself stands (the repository is consistent; caches may be stale only until
    their max-age) and how to invalidate by hand."""
    client = client or boto3.client("cloudfront", config=Config(
        retries={"max_attempts": 10, "mode": "standard"}))
    ids = []
    for start in range(0, len(to_invalidate), BATCH):
        batch = to_invalidate[start:start + BATCH]
        try:
            got = client.create_invalidation(DistributionId=distribution, InvalidationBatch={
                "Paths": {"Quantity": len(batch), "Items": batch},
                # idempotency token: a retried call with the same reference is not a second
                # invalidation
                "CallerReference": f"mxbuild-{time.time_ns()}-{start}"})
        except (ClientError, BotoCoreError) as exc:
            raise _failed(distribution, to_invalidate[start:], exc)
        ids.append(got["Invalidation"]["Id"])
    return ids


def _failed(distribution: str, left: list[str], exc: Exception) -> RepoError:
    code = str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, ClientError) \
        else ""
    stands = ("; the commit itself succeeded: the repository is consistent, and CDN caches "
              f"serve its previous state only until their max-age ({MUTABLE})")
    by_hand = (f"aws cloudfront create-invalidation --distribution-id {distribution} "
               f"--paths {' '.join(left[:20])}{' …' if len(left) > 20 else ''}")
    if code == "NoSuchDistribution":
        return RepoError(f"CloudFront distribution {distribution} does not exist, so "
                         f"{len(left)} changed path(s) were not invalidated{stands}",
                         "give the ID of the distribution in front of this bucket (--cdn or "
                         "MXBUILD_CDN_DISTRIBUTION; `aws cloudfront list-distributions`), "
                         f"then invalidate by hand: {by_hand}")
    if code in DENIED_CODES:
        return RepoError(f"CloudFront CreateInvalidation on {distribution} was denied "
                         f"({code}): {len(left)} changed path(s) were not invalidated{stands}",
                         "grant cloudfront:CreateInvalidation on "
                         f"arn:aws:cloudfront::ACCOUNT:distribution/{distribution} to the "
                         f"identity that publishes, then invalidate by hand: {by_hand}")
    return RepoError(f"CloudFront CreateInvalidation on {distribution} failed: {exc}: "
                     f"{len(left)} changed path(s) were not invalidated{stands}",
                     f"check the credentials and the network, then invalidate by hand: "
                     f"{by_hand}")


@contextmanager
def invalidating(storage, client=None):
    """Around a command that commits: afterwards, invalidate what it rewrote on the
    storage's CloudFront distribution (none set, or a local directory: nothing). Also when
    the command failed after a commit, so a half-done command leaves no stale cache; then
    an invalidation error is logged and the command's own error raised."""
    distribution = getattr(getattr(storage, "target", None), "cdn_distribution", None)
    if not distribution:
        yield
        return
    before = len(storage.changed_mutable)     # what earlier commands wrote is theirs
    try:
        yield
    except Exception:           # not on Ctrl-C: stop at once (the edges expire in max-age)
        _after(storage, distribution, before, client, quiet=True)
        raise
    _after(storage, distribution, before, client)


def _after(storage, distribution: str, before: int, client, quiet: bool = False) -> None:
    to_invalidate = paths(storage.target.prefix, storage.changed_mutable[before:])
    if not to_invalidate:
        log.info("CloudFront %s: nothing changed, nothing to invalidate", distribution)
        return
    try:
        ids = invalidate(distribution, to_invalidate, client)
    except RepoError as exc:
        if not quiet:
            raise
        log.error("%s", exc.render())
        return
    log.info("CloudFront %s: invalidated %d path(s) (%s)", distribution, len(to_invalidate),
             ", ".join(ids))
