"""Invoke tasks: parse flags, call mxbuild. No logic lives here."""
import functools

import invoke
from invoke import Collection

from mxbuild import cli
from mxbuild.entry import entrypoint
from mxbuild.repo.target import S3Options, cdn_distribution, pool_retention_days

# Long flags only: invoke's automatic short flags change when a flag is added.
task = functools.partial(invoke.task, auto_shortflags=False)

SELECTOR_HELP = {
    "variant": "cpu or cuXY, comma-separated",
    "cuda": "CUDA major (9) or major.minor (11.2), or none",
    "distro": "ubuntu16 … debian13, comma-separated",
    "mxnet": "MXNet version, e.g. 1.9.1",
    "cell": "cell-id glob, braces allowed: '1.9.1-cu11*-ubuntu2?'",
    "arch": "amd64, arm64 (comma-separated) or all; default: the primary architecture "
            "(amd64) only (`invoke matrix`: all)",
}
S3_HELP = {
    "endpoint_url": "S3-compatible endpoint (default: AWS, from the boto3 chain)",
    "region": "S3 region (default: from the boto3 chain)",
    "path_style": "path-style S3 addressing (most S3-compatible stores)",
    "sse": "server-side encryption: AES256 or aws:kms",
    "sse_kms_key_id": "KMS key for --sse aws:kms",
}
CA_HELP = {"ca_bundle": "extra CA bundle for HTTPS inside containers ('none' to disable)"}
STAGING_HELP = {"staging": "publish to <codename>-staging (promote later with repo.promote)"}
CACHE_HELP = {"artifact_cache": "stage outputs and images shared between machines: "
                                "s3://BUCKET/PREFIX "
                                "(S3 flags as for the repository) or a directory "
                                "(default: $MXBUILD_ARTIFACT_CACHE, else none)"}
CDN_HELP = {"cdn": "CloudFront distribution ID in front of the S3 repository: invalidate the "
                   "paths each commit rewrote, after it (default: "
                   "$MXBUILD_CDN_DISTRIBUTION, else none)"}
REPO_HELP = {"repo": "s3://BUCKET/PREFIX or a directory (default: out/repo)",
             "keyring": "public keyring to verify against (default: the local signing key)",
             **S3_HELP}


def _s3(endpoint_url, region, path_style, sse, sse_kms_key_id, cdn=None):
    return S3Options(endpoint_url, region, path_style, sse, sse_kms_key_id,
                     pool_retention_days(), cdn_distribution(cdn))


@task(help=SELECTOR_HELP | {"json": "print a JSON list instead of a table"})
@entrypoint
def matrix(c, variant=None, cuda=None, distro=None, mxnet=None, cell=None, arch=None, json=False):
    """List the selected cells of matrix.yaml."""
    cli.show_matrix(cli.Selectors(variant, cuda, distro, mxnet, cell, arch), json)


@task
@entrypoint
def setup(c):
    """Make sure a Docker engine answers (as root: install docker.io and start dockerd)."""
    cli.setup()


@task(help={"distro": "distros to pin, comma-separated (default: every distro; for "
                      "another architecture, the distros its cells use)",
            "arch": "architectures to pin, comma-separated, or all (default: the primary "
                    "one, amd64); arm64 bases are bootstrapped under emulation"})
@entrypoint
def lock(c, distro=None, arch=None):
    """Record the distros' base images (digest, package set) and their compile cells'
    CUDA toolkit images (digest) in pins.lock."""
    cli.lock(distro, arch)


# build's flags that plan shares (plan says what build would do with them)
BUILD_HELP = {
    "publish": "where to publish: s3://BUCKET/PREFIX, a directory, or none "
               "(default: out/repo)",
    "smoke": "run the smoke suite from the published repository (default on)",
    **STAGING_HELP, **CACHE_HELP,
    "recipe": "wheel (the official binary, default), compile (from the source release), "
              "wheel-jvm / compile-jvm (also the JVM half from the source release), maven",
    "source_tarball": "recipes from source (compile, *-jvm): the release tarball on disk "
                      "instead of downloading it",
    "source_dir": "recipes from source (compile, *-jvm): an unpacked source tree (not "
                  "checked against a pin)",
}


@task(optional=["publish"], help=SELECTOR_HELP | S3_HELP | BUILD_HELP | {
    **CA_HELP,
    "force": "run every stage even if its inputs did not change",
    "force_stage": "run these stages (comma-separated: recipe,package,smoke…) regardless",
    "jobs": "cells run at once (default 1), within memory and disk limits"})
@entrypoint
def build(c, variant=None, cuda=None, distro=None, mxnet=None, cell=None, arch=None, publish=None,
          smoke=True, ca_bundle=None, endpoint_url=None, region=None, path_style=False,
          sse=None, sse_kms_key_id=None, recipe=None, source_tarball=None, source_dir=None,
          staging=False, force=False, force_stage=None, jobs=1, artifact_cache=None):
    """Build, package, publish and smoke-test the selected cells (unchanged stages are
    reused from the stage cache)."""
    cli.build(cli.Selectors(variant, cuda, distro, mxnet, cell, arch),
              publish if isinstance(publish, str) else None, smoke, ca_bundle,
              _s3(endpoint_url, region, path_style, sse, sse_kms_key_id),
              cli.RecipeArgs(recipe, source_tarball, source_dir), staging,
              cli.forced_stages(force, force_stage), int(jobs), artifact_cache)


@task(optional=["publish"], help=SELECTOR_HELP | S3_HELP | BUILD_HELP | {
    "json": "print JSON"})
@entrypoint
def plan(c, variant=None, cuda=None, distro=None, mxnet=None, cell=None, arch=None, publish=None,
         smoke=True, endpoint_url=None, region=None, path_style=False, sse=None,
         sse_kms_key_id=None, recipe=None, source_tarball=None, source_dir=None, json=False,
         artifact_cache=None, staging=False):
    """What build would do for the selected cells (build, reuse or skip, and why)."""
    cli.show_plan(cli.Selectors(variant, cuda, distro, mxnet, cell, arch),
                  publish if isinstance(publish, str) else None, smoke,
                  _s3(endpoint_url, region, path_style, sse, sse_kms_key_id),
                  cli.RecipeArgs(recipe, source_tarball, source_dir), json, artifact_cache,
                  staging)


@task(help=SELECTOR_HELP | S3_HELP | CDN_HELP | {
    "to": "s3://BUCKET/PREFIX or a directory", **STAGING_HELP})
@entrypoint
def publish(c, to=None, variant=None, cuda=None, distro=None, mxnet=None, cell=None, arch=None,
            endpoint_url=None, region=None, path_style=False, sse=None, sse_kms_key_id=None,
            staging=False, cdn=None):
    """Publish the built .debs (and thin clients) of the selected cells to a repository."""
    cli.publish(cli.Selectors(variant, cuda, distro, mxnet, cell, arch),
                cli.RepoArgs(to, _s3(endpoint_url, region, path_style, sse, sse_kms_key_id,
                                     cdn)),
                staging)


@task(help=SELECTOR_HELP | S3_HELP | CDN_HELP | {
    "to": "repository to publish to: s3://BUCKET/PREFIX, a directory, or none "
          "(default: out/repo)"})
@entrypoint
def client(c, variant=None, cuda=None, distro=None, mxnet=None, cell=None, arch=None, to=None,
           endpoint_url=None, region=None, path_style=False, sse=None, sse_kms_key_id=None,
           cdn=None):
    """Build the mxnet-thin wheel of the selected MXNet versions and publish its index."""
    cli.thin_clients(cli.Selectors(variant, cuda, distro, mxnet, cell, arch),
                     cli.RepoArgs(to, _s3(endpoint_url, region, path_style, sse,
                                          sse_kms_key_id, cdn)))


@task(help=SELECTOR_HELP | S3_HELP | {
    "repo": "where to publish before the smoke: s3://BUCKET/PREFIX or a directory "
            "(default: out/smoke-repo)",
    **STAGING_HELP, **CA_HELP, **CACHE_HELP, "jobs": "cells run at once (default 1)"})
@entrypoint
def smoke(c, variant=None, cuda=None, distro=None, mxnet=None, cell=None, arch=None, repo=None,
          staging=False, ca_bundle=None, endpoint_url=None, region=None, path_style=False,
          sse=None, sse_kms_key_id=None, jobs=1, artifact_cache=None):
    """Publish already built .debs and run the smoke suite on them (e.g. on a GPU agent)."""
    cli.smoke_built(cli.Selectors(variant, cuda, distro, mxnet, cell, arch),
                    cli.RepoArgs(repo, _s3(endpoint_url, region, path_style, sse,
                                           sse_kms_key_id)), staging, ca_bundle, int(jobs),
                    artifact_cache)


@task(help=S3_HELP | {"repo": "the repository's URL (http(s)://… or s3://BUCKET/PREFIX); "
                            "default http://127.0.0.1:8080 (invoke serve)"})
@entrypoint
def doctor(c, repo=None, endpoint_url=None, region=None, path_style=False, sse=None,
           sse_kms_key_id=None):
    """Check this host (Docker, disk, GPU/driver, distro) and say which package fits it."""
    cli.doctor(cli.RepoArgs(repo, _s3(endpoint_url, region, path_style, sse, sse_kms_key_id)))


@task(help={"port": "port on 127.0.0.1 (default 8080)"})
@entrypoint
def serve(c, port=8080):
    """Serve the local apt repository (out/repo) over http on loopback."""
    cli.serve(port)


@task(name="list", help=REPO_HELP | {"json": "print JSON"})
@entrypoint
def repo_list(c, repo=None, keyring=None, json=False, endpoint_url=None, region=None,
              path_style=False, sse=None, sse_kms_key_id=None):
    """Suites, components, packages and versions of a repository."""
    cli.repo_list(cli.RepoArgs(repo, _s3(endpoint_url, region, path_style, sse,
                                         sse_kms_key_id), keyring), json)


@task(name="verify", help=REPO_HELP)
@entrypoint
def repo_verify(c, repo=None, keyring=None, endpoint_url=None, region=None, path_style=False,
                sse=None, sse_kms_key_id=None):
    """Download every index, check every hash and signature; non-zero exit on any problem."""
    cli.repo_verify(cli.RepoArgs(repo, _s3(endpoint_url, region, path_style, sse,
                                           sse_kms_key_id), keyring))


@task(name="remove", help=REPO_HELP | CDN_HELP | {"suite": "codename, e.g. bookworm",
                                       "component": "variant, e.g. cpu",
                                       "package": "package name (default libmxnet)",
                                       "version": "the exact version to remove",
                                       "arch": "only this architecture's package, e.g. arm64 "
                                               "(default: every architecture of the version)"})
@entrypoint
def repo_remove(c, suite, component, version, package="libmxnet", arch=None, repo=None,
                keyring=None, endpoint_url=None, region=None, path_style=False, sse=None,
                sse_kms_key_id=None, cdn=None):
    """Remove one version from a suite's index (explicit request only)."""
    cli.repo_remove(cli.RepoArgs(repo, _s3(endpoint_url, region, path_style, sse,
                                           sse_kms_key_id, cdn), keyring),
                    suite, component, package, version, arch)


@task(name="promote", help=SELECTOR_HELP | REPO_HELP | CDN_HELP)
@entrypoint
def repo_promote(c, variant=None, cuda=None, distro=None, mxnet=None, cell=None, arch=None,
                 repo=None, keyring=None, endpoint_url=None, region=None, path_style=False, sse=None,
                 sse_kms_key_id=None, cdn=None):
    """Promote the selected cells' versions from <codename>-staging to <codename>."""
    cli.repo_promote(cli.Selectors(variant, cuda, distro, mxnet, cell, arch),
                     cli.RepoArgs(repo, _s3(endpoint_url, region, path_style, sse,
                                            sse_kms_key_id, cdn), keyring))


@task(name="clean", help=REPO_HELP | CDN_HELP | {
    "grace": "keep unreferenced files younger than this (default 24h; e.g. 30m, 7d)",
    "apply": "really delete (default: dry run)",
    "keep": "also drop all but the newest N versions of each package, per suite and "
            "component (default: keep everything)"})
@entrypoint
def repo_clean(c, repo=None, keyring=None, grace="24h", apply=False, endpoint_url=None,
               region=None, path_style=False, sse=None, sse_kms_key_id=None, keep=None,
               cdn=None):
    """Unreferenced pool files and old by-hash generations past the grace period."""
    cli.repo_clean(cli.RepoArgs(repo, _s3(endpoint_url, region, path_style, sse,
                                          sse_kms_key_id, cdn), keyring), grace, apply, keep)


@task(name="rotate-key", help=REPO_HELP | CDN_HELP | {
    "new_key": "fingerprint of a secret key in MXBUILD_GNUPGHOME to add (default: generate "
               "one)",
    "retire": "end the overlap: stop signing with this key and drop it from the keyring"})
@entrypoint
def repo_rotate_key(c, repo=None, new_key=None, retire=None, keyring=None, endpoint_url=None,
                    region=None, path_style=False, sse=None, sse_kms_key_id=None, cdn=None):
    """Add a signing key (old and new sign during the overlap), or retire the old one."""
    cli.repo_rotate_key(cli.RepoArgs(repo, _s3(endpoint_url, region, path_style, sse,
                                               sse_kms_key_id, cdn), keyring), new_key, retire)


@task(name="mirror", help=S3_HELP | {
    "from": "the repository to copy: s3://BUCKET/PREFIX or a directory",
    "to": "the mirror: s3://BUCKET/PREFIX or a directory (S3 flags apply to both sides; "
          "--sse to the mirror's writes)",
    "from_endpoint_url": "S3 endpoint of --from when it differs from the mirror's",
    "from_region": "S3 region of --from when it differs from the mirror's",
    "keyring": "public keyring the source's InRelease must verify with (default: the local "
               "signing key)",
    "name": "this mirror's name: its trace file project/trace/<name> (default: host name)",
    "workers": "pool files copied in parallel (default 8)"})
@entrypoint
def repo_mirror(c, from_, to, keyring=None, name=None, workers=8, endpoint_url=None,
                region=None, path_style=False, sse=None, sse_kms_key_id=None,
                from_endpoint_url=None, from_region=None):
    """Copy a repository in Debian's order (pool, by-hash, InRelease last, deletions after
    the source's clean), incrementally; write the trace file."""
    cli.repo_mirror(
        cli.RepoArgs(from_, S3Options(from_endpoint_url or endpoint_url, from_region or region,
                                      path_style), keyring),
        cli.RepoArgs(to, _s3(endpoint_url, region, path_style, sse, sse_kms_key_id)),
        name, int(workers))


@task(help={"screenshot": "also take docs/images/report.png from this report.html (a real "
                        "run's out/report.html) with headless Chromium"})
@entrypoint
def docs(c, screenshot=None):
    """Regenerate the reference pages made from the code (tasks, matrix.yaml keys, exit
    codes); the unit tests fail when the committed pages differ."""
    cli.docs(screenshot)


repo = Collection("repo", repo_list, repo_verify, repo_remove, repo_promote, repo_clean,
                  repo_rotate_key, repo_mirror)
ns = Collection(matrix, setup, lock, plan, build, smoke, publish, client, serve, doctor,
                docs, repo)
