"""--cdn: the setting, the invalidation paths, and what a failed invalidation says (the
CloudFront calls themselves run against moto in tests/integration/test_cdn.py)."""
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from mxbuild.errors import ConfigError
from mxbuild.repo import cdn
from mxbuild.repo.s3 import is_immutable
from mxbuild.repo.target import cdn_distribution

PATHS = ["/apt/dists/bookworm/InRelease", "/apt/dists/bookworm/Release"]


def test_flag_then_setting_then_none():
    assert cdn_distribution("E2QWRUHAPOMQZL", {"MXBUILD_CDN_DISTRIBUTION": "EOTHER"}) == \
        "E2QWRUHAPOMQZL"
    assert cdn_distribution(None, {"MXBUILD_CDN_DISTRIBUTION": " EOTHER "}) == "EOTHER"
    assert cdn_distribution(None, {}) is None


@pytest.mark.parametrize("text", ["d111111abcdef8.cloudfront.net",
                                  "arn:aws:cloudfront::123:distribution/E2Q"])
def test_a_domain_or_arn_is_refused(text):
    with pytest.raises(ConfigError, match="is malformed") as info:
        cdn_distribution(text, {})
    assert "not its domain name or ARN" in info.value.hint


def test_paths_keep_the_prefix_and_quote():
    assert cdn.paths("apt/prod/", ["dists/b/InRelease", "dists/b/InRelease"]) == \
        ["/apt/prod/dists/b/InRelease"]
    assert cdn.paths("", ["simple/mxnet-thin/"]) == ["/simple/mxnet-thin/"]
    assert cdn.paths("apt", ["dists/a b/Release"]) == ["/apt/dists/a%20b/Release"]


@pytest.mark.parametrize("key,immutable", [
    ("pool/cpu/libm/libmxnet/libmxnet_1.9.1_amd64.deb", True),
    ("dists/bookworm/cpu/binary-amd64/by-hash/SHA256/ab", True),
    ("maven/org/apache/mxnet/mxnet-full/1.9.1/mxnet-full-1.9.1.jar", True),
    ("maven/org/apache/mxnet/mxnet-full/maven-metadata.xml", False),
    ("maven/org/apache/mxnet/mxnet-full/maven-metadata.xml.sha1", False),
    ("dists/bookworm/cpu/binary-amd64/Packages.xz", False),
    ("dists/bookworm/cpu/Contents-amd64.gz", False),
    ("simple/mxnet-thin/", False),
    ("mxbuild-archive-keyring.gpg", False),
])
def test_what_is_invalidated_is_what_is_not_immutable(key, immutable):
    assert is_immutable(key) is immutable


class Refusing:
    """A CloudFront client whose CreateInvalidation raises what AWS answers."""
    def __init__(self, exc):
        self.exc = exc

    def create_invalidation(self, **kw):
        raise self.exc


def _client_error(code):
    return ClientError({"Error": {"Code": code, "Message": "no"}}, "CreateInvalidation")


def test_access_denied_names_the_permission_and_says_the_commit_stands():
    with pytest.raises(Exception) as info:
        cdn.invalidate("E2QWRUHAPOMQZL", PATHS, Refusing(_client_error("AccessDenied")))
    err = info.value
    assert "denied (AccessDenied)" in err.message
    assert "the commit itself succeeded: the repository is consistent" in err.message
    assert "cloudfront:CreateInvalidation on " \
        "arn:aws:cloudfront::ACCOUNT:distribution/E2QWRUHAPOMQZL" in err.hint
    assert "--distribution-id E2QWRUHAPOMQZL --paths " + " ".join(PATHS) in err.hint
    assert err.exit_code != 0


def test_no_connection_says_the_commit_stands():
    with pytest.raises(Exception) as info:
        cdn.invalidate("E2Q", PATHS, Refusing(EndpointConnectionError(
            endpoint_url="https://cloudfront.amazonaws.com")))
    assert "the commit itself succeeded" in info.value.message
    assert "invalidate by hand: aws cloudfront create-invalidation" in info.value.hint
