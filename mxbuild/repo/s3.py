"""S3 storage backend: conditional writes (IfNoneMatch / IfMatch) give the publish
protocol its compare-and-swap without any lock server.

Credentials, region and endpoint come from boto3's standard chain; nothing here ever
formats a credential into a message.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import random
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import (BotoCoreError, ClientError, ConnectionError as BotoConnectionError,
                                 HTTPClientError)

from ..errors import ConfigError, PoolConflictError, RepoError
from ..fetch import sha256_file
from .storage import CasConflict, StoredObject

IMMUTABLE = "public, max-age=31536000, immutable"   # pool files, by-hash indexes, Maven versions
MUTABLE = "public, max-age=60, must-revalidate"      # InRelease, Release, plain-path indexes,
                                                     # maven-metadata.xml and its checksums
SHA256_META = "sha256"
# Answers worth another try. botocore retries them too, but its standard mode stops when
# its retry quota (a token bucket per client) runs dry under a burst of faults.
NOT_FOUND_CODES = ("NoSuchKey", "404", "NotFound")
TRANSIENT_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout",
                   "500", "502", "503", "504"}
DENIED_CODES = ("AccessDenied", "403", "Forbidden", "AllAccessDisabled")
PERMISSIONS = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject",
               "LIST": "s3:ListBucket", "DELETE": "s3:DeleteObject"}


@dataclass(frozen=True)
class S3Target:
    bucket: str
    prefix: str
    endpoint_url: str | None = None
    region: str | None = None
    path_style: bool = False
    sse: str | None = None            # AES256 | aws:kms
    sse_kms_key_id: str | None = None
    pool_retention_days: int | None = None   # S3 Object Lock (GOVERNANCE) on pool files
    cdn_distribution: str | None = None      # CloudFront distribution to invalidate (cdn.py)

    @classmethod
    def parse(cls, url: str, **kw) -> "S3Target":
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError(f"{url!r} is not an S3 URL", "write s3://BUCKET/PREFIX")
        if kw.get("sse") not in (None, "AES256", "aws:kms"):
            raise ConfigError(f"server-side encryption {kw['sse']!r} is not supported",
                              "use AES256 or aws:kms")
        return cls(parts.netloc, parts.path.strip("/"), **kw)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def public_url(self) -> str:
        """The URL apt uses (anonymous GET: bucket policy or a CDN in front)."""
        base = (f"{self.endpoint_url.rstrip('/')}/{self.bucket}" if self.endpoint_url
                else f"https://{self.bucket}.s3.amazonaws.com")
        return f"{base}/{self.prefix}".rstrip("/")


def content_type(key: str, data: bytes | None) -> str:
    name = key.rsplit("/", 1)[-1]
    if name.endswith(".deb"):
        return "application/vnd.debian.binary-package"
    if name == "Release.gpg":
        return "application/pgp-signature"
    if name.endswith(".gpg"):
        return "application/pgp-keys"
    if name.endswith(".html") or key.endswith("/"):   # PEP 503 pages (and their dir keys)
        return "text/html; charset=utf-8"
    if name.endswith(".whl"):
        return "application/zip"
    if name.endswith(".jar"):
        return "application/java-archive"
    if name.endswith((".pom", ".xml")):                # Maven poms and metadata
        return "text/xml"
    head = data[:6] if data is not None else b""
    if name.endswith(".gz") or head.startswith(b"\x1f\x8b"):
        return "application/gzip"
    if name.endswith(".xz") or head.startswith(b"\xfd7zXZ"):
        return "application/x-xz"
    return "text/plain; charset=utf-8"


def is_immutable(key: str) -> bool:
    """Written once, never changed: what a cache may keep for a year (and a CDN never
    needs to forget). Everything else is rewritten in place by commits."""
    return key.startswith("pool/") or "/by-hash/" in key or key.endswith(".whl") or (
        # a published Maven version never changes; maven-metadata.xml(.sha1…) does
        key.startswith("maven/") and "/maven-metadata.xml" not in key)


def cache_control(key: str) -> str:
    return IMMUTABLE if is_immutable(key) else MUTABLE


class S3Storage:
    """check_server: probe the server's conditional writes before the first write
    (probe.ensure_safe) and refuse one that would lose packages. Off only for stores that
    need no compare-and-swap (the artifact cache: content-addressed, create-only) and for
    tests that bypass the probe on purpose."""
    # S3 answers GET prefix/ with the object of that key, never with prefix/index.html.
    serves_directory_index = False
    def __init__(self, target: S3Target, client=None, max_attempts: int = 10,
                 rounds: int = 6, check_server: bool = True):
        self.target = target
        self.rounds = rounds
        self.check_server = check_server
        self.verdict = None            # probe.Verdict, once checked
        # mutable keys this storage rewrote or deleted (put, put_cas, delete), in order:
        # what a CDN in front must forget after the commit (cdn.py). Create-only writes
        # (put_new: pool, by-hash, audit records) never change a key: not recorded.
        self.changed_mutable: list[str] = []
        self._checking = threading.Lock()
        self.client = client or boto3.client(
            "s3", endpoint_url=target.endpoint_url, region_name=target.region,
            config=Config(retries={"max_attempts": max_attempts, "mode": "standard"},
                          s3={"addressing_style": "path" if target.path_style else "auto"},
                          connect_timeout=10, read_timeout=120))

    def describe(self) -> str:
        return self.target.describe()

    def _key(self, key: str) -> str:
        return f"{self.target.prefix}/{key}" if self.target.prefix else key

    def _fail(self, action: str, key: str, exc: Exception) -> RepoError:
        # botocore messages name the operation and the error code, never credentials
        if isinstance(exc, ClientError) and self._code(exc) in DENIED_CODES:
            permission = PERMISSIONS.get(action, "s3:GetObject")
            arn = (f"arn:aws:s3:::{self.target.bucket}" if action == "LIST" else
                   f"arn:aws:s3:::{self.target.bucket}/{self._key('*')}")
            extra = (" (without s3:ListBucket, S3 also answers 403 for a missing key)"
                     if action in ("GET", "HEAD") else "")
            return RepoError(f"S3 {action} {self.describe()}/{key} was denied "
                             f"({self._code(exc)}): the credentials in use lack {permission} "
                             f"on {arn}{extra}",
                             f"grant {permission} on {arn} to the identity that runs this "
                             "(publishing needs s3:GetObject, s3:PutObject and s3:ListBucket; "
                             "remove/clean also s3:DeleteObject), or use credentials that "
                             "have it (boto3 chain: AWS_PROFILE, AWS_ACCESS_KEY_ID, instance "
                             "role…)")
        return RepoError(f"S3 {action} {self.describe()}/{key} failed: {exc}",
                         "check the endpoint, the bucket and the credentials' permissions "
                         "(boto3 chain: AWS_PROFILE, AWS_ACCESS_KEY_ID, instance role…)")

    @staticmethod
    def _code(exc: ClientError) -> str:
        return str(exc.response.get("Error", {}).get("Code", ""))

    def _do(self, call):
        """Run call() (botocore retries inside), and a few more rounds with backoff when it
        still ends in a transient fault. Conditional writes stay correct across rounds: a
        write that was applied but whose answer was lost comes back as 412."""
        for round_ in range(1, self.rounds + 1):
            try:
                return call()
            except ClientError as exc:
                if self._code(exc) not in TRANSIENT_CODES or round_ == self.rounds:
                    raise
            except (BotoConnectionError, HTTPClientError):
                if round_ == self.rounds:
                    raise
            time.sleep(min(0.2 * 2 ** round_, 8) * random.uniform(0.5, 1.5))
    def _read(self, action: str, key: str, call, missing=None):
        """call() with _do's retries; a missing key gives `missing`, any other failure a
        RepoError naming the action and key."""
        try:
            return self._do(call)
        except ClientError as exc:
            if self._code(exc) in NOT_FOUND_CODES:
                return missing
            raise self._fail(action, key, exc)
        except BotoCoreError as exc:
            raise self._fail(action, key, exc)

    def get(self, key: str) -> tuple[bytes, str] | None:
        def call():
            obj = self.client.get_object(Bucket=self.target.bucket, Key=self._key(key))
            return obj["Body"].read(), obj["ETag"]
        return self._read("GET", key, call)

    def download(self, key: str, dest: Path) -> bool:
        """Stream key into dest (stage-cache entries can be hundreds of MB); False if
        there is no such key."""
        def call():
            with open(dest, "wb") as f:
                self.client.download_fileobj(self.target.bucket, self._key(key), f)
            return True
        return self._read("GET", key, call, missing=False)

    def head(self, key: str) -> dict | None:
        return self._read("HEAD", key, lambda: self.client.head_object(
            Bucket=self.target.bucket, Key=self._key(key)))

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def _put_args(self, key: str, data: bytes | None) -> dict:
        args = {"Bucket": self.target.bucket, "Key": self._key(key),
                "ContentType": content_type(key, data), "CacheControl": cache_control(key)}
        if self.target.sse:
            args["ServerSideEncryption"] = self.target.sse
            if self.target.sse_kms_key_id:
                args["SSEKMSKeyId"] = self.target.sse_kms_key_id
        return args

    def _writable(self) -> None:
        """Before the first write: is the server safe to publish through?"""
        if not self.check_server or self.verdict is not None:
            return
        from . import probe
        with self._checking:
            if self.verdict is None:
                self._check_object_lock()
                self.verdict = probe.ensure_safe(self)

    def if_match(self, token: str) -> str:
        """The If-Match value for an ETag, in the form the probe found the server honours
        (unquoted for Ceph RGW up to reef 18.2.7, quoted as S3 returns it otherwise)."""
        from . import probe
        form = self.verdict.if_match if self.verdict and self.verdict.if_match else probe.QUOTED
        return probe.if_match_value(token, form)

    def _retention(self, key: str) -> dict:
        """Object Lock arguments for a pool file when pool retention is set."""
        days = self.target.pool_retention_days
        if not days or not key.startswith("pool/"):
            return {}
        until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)
        return {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": until}

    def _check_object_lock(self) -> None:
        """Pool retention needs Object Lock on the bucket: say so before any write."""
        if not self.target.pool_retention_days:
            return
        try:
            conf = self.client.get_object_lock_configuration(Bucket=self.target.bucket)
            enabled = conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        except ClientError as exc:
            if self._code(exc) in DENIED_CODES:
                raise self._fail("GET", "?object-lock", exc)
            enabled = None
        if enabled != "Enabled":
            raise ConfigError(
                f"pool retention ({self.target.pool_retention_days} days) was asked for, but "
                f"bucket {self.target.bucket} has no S3 Object Lock",
                "create the bucket with Object Lock enabled (it can only be enabled at "
                "creation, or on AWS by support), or unset MXBUILD_POOL_RETENTION_DAYS")

    def _changed(self, key: str) -> None:
        if not is_immutable(key):
            self.changed_mutable.append(key)

    def _put(self, key: str, data: bytes | None, src: Path | None, sha256: str, **cond):
        self._writable()
        args = {**self._put_args(key, data), "Metadata": {SHA256_META: sha256},
                **self._retention(key), **cond}

        def call():
            if src is not None:
                with open(src, "rb") as body:   # streamed: .debs can be hundreds of MB
                    return self.client.put_object(Body=body, **args)
            return self.client.put_object(Body=data, **args)
        return self._do(call)

    def sha256_of(self, key: str) -> str | None:
        head = self.head(key)
        return None if head is None else self._stored_sha256(key, head)

    def _stored_sha256(self, key: str, head: dict) -> str:
        meta = head.get("Metadata", {}).get(SHA256_META)
        if meta:
            return meta
        got = self.get(key)                 # written by another tool: hash the bytes
        return hashlib.sha256(got[0]).hexdigest() if got else ""

    def put_new(self, key: str, data: bytes | None = None, src: Path | None = None,
                sha256: str | None = None) -> bool:
        self._writable()            # before the HEAD: a refused server sees no write at all
        want = sha256 or (hashlib.sha256(data).hexdigest() if data is not None
                          else sha256_file(src))
        head = self.head(key)
        if head is None:
            try:
                self._put(key, data, src, want, IfNoneMatch="*")
                return True
            except ClientError as exc:
                # 412: created meanwhile (or our own write whose response was lost)
                if self._code(exc) not in ("PreconditionFailed", "412",
                                           "ConditionalRequestConflict", "409"):
                    raise self._fail("PUT", key, exc)
            except BotoCoreError as exc:
                raise self._fail("PUT", key, exc)
            head = self.head(key)
            if head is None:
                raise RepoError(f"{self.describe()}/{key}: conditional create failed but the "
                                "object does not exist", "re-run the publish")
        have = self._stored_sha256(key, head)
        if have != want:
            raise PoolConflictError(f"{self.describe()}/{key} already exists with different "
                                    f"content (sha256 {have}, new {want})")
        return False

    def put_cas(self, key: str, data: bytes, expected_token: str | None) -> str:
        self._writable()
        cond = {"IfNoneMatch": "*"} if expected_token is None else \
            {"IfMatch": self.if_match(expected_token)}
        try:
            resp = self._put(key, data, None, hashlib.sha256(data).hexdigest(), **cond)
        except ClientError as exc:
            if self._code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict",
                                   "409", "NoSuchKey"):
                if expected_token is not None:
                    self._check_refusal(key, expected_token, cond["IfMatch"])
                raise CasConflict(key)
            raise self._fail("PUT", key, exc)
        except BotoCoreError as exc:
            raise self._fail("PUT", key, exc)
        self._changed(key)
        return resp["ETag"]

    def _check_refusal(self, key: str, expected_token: str, sent: str) -> None:
        """A refused compare-and-swap is a lost race only if the object changed. If its
        ETag is still the one we sent, the server refuses its own current ETag: no retry
        can succeed, so say that (and drop the cached verdict: the next run probes)."""
        from . import probe
        head = self.head(key)
        if head is None or probe.unquoted(head.get("ETag", "")) != probe.unquoted(expected_token):
            return
        server = self.verdict.server if self.verdict else "server not probed"
        probe.forget(self)
        raise RepoError(
            f"S3 PUT {self.describe()}/{key} with If-Match: {sent} was refused (412) although "
            f"the object's ETag is still {head['ETag']}: the server at "
            f"{self.target.endpoint_url or 'AWS'} ({server}) refuses its own current ETag, "
            "so no commit can succeed (this is not contention: nothing else wrote the key)",
            "re-run: the cached verdict on this server was dropped, so mxbuild probes it again "
            "and sends If-Match in the form it honours; if this persists, the server's "
            "If-Match handling is broken — upgrade it (Ceph RGW up to reef 18.2.7: fixed by "
            "ceph/ceph PR #63348) or publish to another server")

    def put_unchecked(self, key: str, data: bytes) -> None:
        """A plain PUT that does not wait for the probe (the probe's own cache)."""
        args = {**self._put_args(key, data), "Body": data,
                "Metadata": {SHA256_META: hashlib.sha256(data).hexdigest()}}
        try:
            self._do(lambda: self.client.put_object(**args))
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("PUT", key, exc)

    def put(self, key: str, data: bytes) -> None:
        try:
            self._put(key, data, None, hashlib.sha256(data).hexdigest())
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("PUT", key, exc)
        self._changed(key)

    def list(self, prefix: str = "") -> list[StoredObject]:
        out = []
        base = f"{self.target.prefix}/" if self.target.prefix else ""
        def call():
            out.clear()
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.target.bucket, Prefix=base + prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    out.append(StoredObject(obj["Key"][len(base):], obj["Size"],
                                            obj["LastModified"].timestamp()))
        try:
            self._do(call)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("LIST", prefix, exc)
        return sorted(out)

    def subdirs(self, prefix: str) -> list[str]:
        """The names of the 'directories' right under prefix (which ends with /): one
        delimited LIST, whatever the number of objects below them."""
        base = f"{self.target.prefix}/" if self.target.prefix else ""
        out: list[str] = []
        def call():
            out.clear()
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.target.bucket, Prefix=base + prefix, Delimiter="/")
            for page in pages:
                out.extend(p["Prefix"][len(base + prefix):].rstrip("/")
                           for p in page.get("CommonPrefixes", []))
        try:
            self._do(call)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("LIST", prefix, exc)
        return sorted(out)

    def retained_until(self, key: str) -> float | None:
        """Until when S3 Object Lock keeps this object (seconds since the epoch; inf: a
        legal hold), or None. On a bucket with Object Lock a plain DELETE still succeeds: it
        adds a delete marker that hides the retained version from apt, so clean asks first."""
        head = self.head(key)
        if head is None:
            return None
        if head.get("ObjectLockLegalHoldStatus") == "ON":
            return float("inf")
        until = head.get("ObjectLockRetainUntilDate")
        return until.timestamp() if until is not None else None

    def delete(self, key: str) -> None:
        try:
            self._do(lambda: self.client.delete_object(Bucket=self.target.bucket,
                                                       Key=self._key(key)))
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("DELETE", key, exc)
        self._changed(key)

