"""The private-bucket apt lines (apt-transport-s3): what doctor prints, and what the
transport cannot read."""
from mxbuild.repo import private
from mxbuild.repo.s3 import S3Target


def test_aws_bucket_lines():
    target = S3Target.parse("s3://mxbuild-apt/stable")
    assert private.problems(target) == []
    assert private.source_line(target, "bookworm", "cpu") == (
        "deb [signed-by=/usr/share/keyrings/mxbuild-archive-keyring.gpg] "
        "s3://mxbuild-apt/stable bookworm cpu")
    assert private.auth_conf(target, "eu-west-1") == (
        "AccessKeyId = <access key id>\nSecretAccessKey = <secret access key>\n"
        "Region = eu-west-1\n")
    assert private.auth_conf(target, None, keys=False) == "Region = <bucket region>\n"
    commands = private.commands(target, "bookworm", "cu112", "libmxnet", "eu-west-1")
    assert commands[0] == "sudo apt-get install apt-transport-s3"
    assert commands[-1] == "sudo apt-get update && sudo apt-get install libmxnet"
    assert any("s3://mxbuild-apt/stable bookworm cu112" in c for c in commands)


def test_self_hosted_store_needs_https_and_no_dots():
    ok = S3Target.parse("s3://apt/x", endpoint_url="https://s3.example.org:8443")
    assert private.auth_conf(ok, "us-east-1").endswith("Endpoint = 's3.example.org:8443'\n")
    bad = S3Target.parse("s3://my.apt/x", endpoint_url="http://127.0.0.1:9000")
    problems = private.problems(bad)
    assert any("has dots" in p for p in problems)
    assert any("not https" in p and "virtual-hosted" in p for p in problems)
    assert all(c.startswith("# ") for c in
               private.commands(bad, "bookworm", "cpu", "libmxnet", "x")[:2])
