"""Invoke tasks: parse flags, call mxbuild. No logic lives here."""
from invoke import task

from mxbuild import cli
from mxbuild.entry import entrypoint

SELECTOR_HELP = {
    "variant": "cpu or cuXY, comma-separated",
    "cuda": "CUDA major (9) or major.minor (11.2), or none",
    "distro": "ubuntu16 … debian13, comma-separated",
    "mxnet": "MXNet version, e.g. 1.9.1",
    "cell": "cell-id glob, braces allowed: '1.9.1-cu11*-ubuntu2?'",
}


@task(help=SELECTOR_HELP | {"json": "print a JSON list instead of a table"})
@entrypoint
def matrix(c, variant=None, cuda=None, distro=None, mxnet=None, cell=None, json=False):
    """List the selected cells of matrix.yaml."""
    cli.show_matrix(cli.Selectors(variant, cuda, distro, mxnet, cell), json)


@task
@entrypoint
def setup(c):
    """Make sure a Docker engine answers (as root: install docker.io and start dockerd)."""
    cli.setup()


@task(help=SELECTOR_HELP | {
    "publish": "publish to the local repository out/repo (default on)",
    "smoke": "run the smoke suite after publishing (default on)",
    "ca_bundle": "extra CA bundle for HTTPS inside containers ('none' to disable)"})
@entrypoint
def build(c, variant=None, cuda=None, distro=None, mxnet=None, cell=None, publish=True,
          smoke=True, ca_bundle=None):
    """Build, package, publish and smoke-test the selected cells."""
    cli.build(cli.Selectors(variant, cuda, distro, mxnet, cell), publish, smoke, ca_bundle)


@task(help={"port": "port on 127.0.0.1 (default 8080)"})
@entrypoint
def serve(c, port=8080):
    """Serve the local apt repository (out/repo) over http on loopback."""
    cli.serve(port)
