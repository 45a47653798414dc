"""Reading the repository from a private bucket: Debian's apt-transport-s3.

The transport (bookworm: 2.1.0) signs its GETs with SigV4 using an instance role (IMDSv2)
or keys from /etc/apt/s3auth.conf (`AccessKeyId`, `SecretAccessKey`, `Token`, `Region`,
`Endpoint`; ini without sections). It always speaks https and addresses buckets
virtual-hosted style (`https://BUCKET.<Endpoint>/…`, Endpoint default
`s3.<Region>.amazonaws.com`), so bucket names must not contain dots and a self-hosted store
needs TLS and wildcard DNS for `*.<Endpoint>`. The source line is
`deb [signed-by=KEYRING] s3://BUCKET/PREFIX <codename> <component>`.
Credentials are only ever written by the operator; nothing here reads or prints them.
"""
from __future__ import annotations

import urllib.parse

from .s3 import S3Target
from .sign import KEYRING_NAME

TRANSPORT = "apt-transport-s3"
AUTH_FILE = "/etc/apt/s3auth.conf"
KEYRING_DEST = f"/usr/share/keyrings/{KEYRING_NAME}"


def apt_uri(target: S3Target) -> str:
    return f"s3://{target.bucket}/{target.prefix}".rstrip("/")


def endpoint_host(target: S3Target) -> str | None:
    """What goes into s3auth.conf's Endpoint (host[:port]); None on AWS."""
    if not target.endpoint_url:
        return None
    return urllib.parse.urlsplit(target.endpoint_url).netloc


def problems(target: S3Target) -> list[str]:
    """Why apt-transport-s3 could not read this target (empty: it can)."""
    out = []
    if "." in target.bucket:
        out.append(f"bucket {target.bucket!r} has dots: {TRANSPORT} refuses such names "
                   "(TLS on BUCKET.host); use a bucket without dots")
    if target.endpoint_url and not target.endpoint_url.startswith("https://"):
        out.append(f"{target.endpoint_url} is not https: {TRANSPORT} speaks only https, "
                   f"virtual-hosted style (https://{target.bucket}.<endpoint>/), so the "
                   "store needs TLS and wildcard DNS for that name")
    return out


def auth_conf(target: S3Target, region: str | None, keys: bool = True) -> str:
    """s3auth.conf with placeholders for the keys (an instance role needs no keys)."""
    lines = []
    if keys:
        lines += ["AccessKeyId = <access key id>", "SecretAccessKey = <secret access key>"]
    lines.append(f"Region = {region or '<bucket region>'}")
    host = endpoint_host(target)
    if host:
        lines.append(f"Endpoint = '{host}'")
    return "\n".join(lines) + "\n"


def source_line(target: S3Target, codename: str, component: str,
                keyring: str = KEYRING_DEST) -> str:
    return f"deb [signed-by={keyring}] {apt_uri(target)} {codename} {component}"


def commands(target: S3Target, codename: str, component: str, package: str,
             region: str | None) -> list[str]:
    if region is None:
        import boto3
        region = boto3.session.Session().region_name    # reads no credentials
    conf = auth_conf(target, region).rstrip("\n").split("\n")
    out = [f"# {p}" for p in problems(target)]
    out += [
        f"sudo apt-get install {TRANSPORT}",
        "# keys (leave AccessKeyId/SecretAccessKey out with an instance role):",
        f"sudo install -m 0600 /dev/null {AUTH_FILE}",
        "printf '%s\\n' " + " ".join(f'"{line}"' for line in conf)
        + f" | sudo tee {AUTH_FILE} > /dev/null",
        f"aws s3 cp {apt_uri(target)}/{KEYRING_NAME} - | sudo tee {KEYRING_DEST} > /dev/null"
        "   # or ship the keyring with your host configuration",
        f"echo '{source_line(target, codename, component)}' "
        "| sudo tee /etc/apt/sources.list.d/mxbuild.list",
        f"sudo apt-get update && sudo apt-get install {package}",
    ]
    return out
