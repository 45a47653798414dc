import pytest

from mxbuild.cli import parse_duration
from mxbuild.errors import ConfigError
from mxbuild.repo.s3 import S3Target, cache_control, content_type
from mxbuild.repo.storage import LocalStorage
from mxbuild.repo.target import S3Options, open_storage

from ..conftest import CACHE_LONG, CACHE_SHORT, ROOT


def test_the_docs_promise_these_cache_control_values():
    text = " ".join((ROOT / "docs/operators/s3.md").read_text().split())
    assert f"Cache-Control: {CACHE_LONG}" in text
    assert f"Cache-Control: {CACHE_SHORT}" in text


def test_s3_url_parsing_and_public_url():
    t = S3Target.parse("s3://my-bucket/apt/prod/")
    assert (t.bucket, t.prefix) == ("my-bucket", "apt/prod")
    assert t.public_url() == "https://my-bucket.s3.amazonaws.com/apt/prod"
    local = S3Target.parse("s3://b/p", endpoint_url="http://127.0.0.1:9000/")
    assert local.public_url() == "http://127.0.0.1:9000/b/p"
    assert S3Target.parse("s3://bucket").prefix == ""


@pytest.mark.parametrize("url", ["http://bucket/x", "s3:///nobucket", "bucket/prefix"])
def test_bad_s3_urls(url):
    with pytest.raises(ConfigError, match="is not an S3 URL"):
        S3Target.parse(url)


def test_bad_sse():
    with pytest.raises(ConfigError, match="'des' is not supported") as info:
        S3Target.parse("s3://b/p", sse="des")
    assert info.value.hint == "use AES256 or aws:kms"


@pytest.mark.parametrize("key,data,ctype", [
    ("pool/cpu/libm/libmxnet/libmxnet_1.9.1-1~deb12_amd64.deb", None,
     "application/vnd.debian.binary-package"),
    ("dists/bookworm/Release.gpg", b"-----BEGIN", "application/pgp-signature"),
    ("mxbuild-archive-keyring.gpg", b"\x99", "application/pgp-keys"),
    ("dists/bookworm/cpu/binary-amd64/Packages.gz", b"\x1f\x8b", "application/gzip"),
    ("dists/bookworm/cpu/binary-amd64/by-hash/SHA256/ab", b"\xfd7zXZ\x00", "application/x-xz"),
    ("dists/bookworm/cpu/binary-amd64/by-hash/SHA256/cd", b"Package: x", "text/plain; charset=utf-8"),
    ("dists/bookworm/InRelease", b"-----BEGIN PGP", "text/plain; charset=utf-8"),
])
def test_content_type(key, data, ctype):
    assert content_type(key, data) == ctype


def test_cache_control():
    assert cache_control("pool/cpu/libm/libmxnet/x.deb") == CACHE_LONG
    assert cache_control("dists/bookworm/cpu/binary-amd64/by-hash/SHA512/ab") == CACHE_LONG
    assert cache_control("simple/mxnet-thin/mxnet_thin-1.9.1-py3-none-any.whl") == CACHE_LONG
    for key in ("dists/bookworm/InRelease", "dists/bookworm/Release",
                "dists/bookworm/Release.gpg", "dists/bookworm/cpu/binary-amd64/Packages.xz",
                "simple/mxnet-thin/index.html"):
        assert cache_control(key) == CACHE_SHORT


def test_open_storage_picks_the_backend(tmp_path):
    assert isinstance(open_storage(tmp_path / "repo"), LocalStorage)
    assert isinstance(open_storage(f"file://{tmp_path}/repo"), LocalStorage)
    s3 = open_storage("s3://bkt/pfx", S3Options(endpoint_url="http://127.0.0.1:1",
                                                 region="us-east-1", path_style=True))
    assert s3.describe() == "s3://bkt/pfx"


@pytest.mark.parametrize("text,seconds", [("0", 0), ("90s", 90), ("30m", 1800),
                                          ("24h", 86400), ("7d", 604800), ("1.5h", 5400)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_parse_duration_rejects_garbage():
    with pytest.raises(ConfigError, match="malformed"):
        parse_duration("a day")


def test_probe_identity_and_if_match_forms():
    from mxbuild.repo import probe
    assert probe.request_id_shape("tx0000091eeaaf7507c7346-006b14e53e-1010-default") == \
        "txh-h-h-default"
    assert probe.request_id_shape("4442587FB7D0A2F9") == "h"
    assert probe.identity({"server": "SeaweedFS 30GB 4.53", "x-amz-request-id": "1765"}) == \
        "SeaweedFS 30GB 4.53; request id h"
    assert probe.identity({}) == "no Server header; request id none"
    assert probe.if_match_value('"f97c"', probe.QUOTED) == '"f97c"'
    assert probe.if_match_value('"f97c"', probe.UNQUOTED) == "f97c"
    assert probe.if_match_value("f97c", probe.QUOTED) == '"f97c"'


def test_verdict_round_trip_safety_and_age():
    import datetime as dt
    from mxbuild.repo import probe
    quirk = "rgw: refuses its own current ETag … accepts it unquoted"
    v = probe.Verdict("http://rgw", "no Server header; request id txh-h-h-default",
                      probe.UNQUOTED, (quirk,), (quirk,), "2026-12-01T00:00:00+00:00",
                      (probe.UNQUOTED,))
    assert v.safe and v.refusals == []
    assert probe.Verdict.from_json(v.to_json()) == v
    assert v.age(dt.datetime(2026, 12, 9, tzinfo=dt.timezone.utc)) > probe.MAX_AGE
    lost = probe.Verdict("http://db", "x", probe.QUOTED, ("stale If-Match ACCEPTED",))
    assert not lost.safe and lost.refusals == ["stale If-Match ACCEPTED"]
    assert not probe.Verdict("http://x", "x", None).safe     # no form commits at all


def test_pool_retention_days_setting():
    from mxbuild.errors import ConfigError
    from mxbuild.repo.target import pool_retention_days
    assert pool_retention_days({}) is None
    assert pool_retention_days({"MXBUILD_POOL_RETENTION_DAYS": " 30 "}) == 30
    for bad in ("0", "-3", "30d", "1.5"):
        with pytest.raises(ConfigError, match="not a number of days") as info:
            pool_retention_days({"MXBUILD_POOL_RETENTION_DAYS": bad})
        assert "unset it" in info.value.hint
