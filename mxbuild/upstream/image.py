"""The upstream test image: the cell's smoke client image (its distro's Python with the
MXNet client's requirements, no client) plus what MXNet's own tests import besides
(matrix `upstream_tests.<version>.pip`: nose, scipy, pytest-timeout…), with every version
the client image already pinned kept as it is (a constraints file), and the distro
packages the official wheel's library needs for the reference run (`apt`: libgomp1…)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO

from ..containers import CommandFailed, Container
from ..errors import ImageError
from ..fetch import DEFAULT_INDEX
from ..images import ImageRef, content_hash, ensure_tagged
from ..matrix import Cell, UpstreamTests
from ..smoke.client_image import CLIENT_VENV, COMMIT_CHANGES

TEST_REPO = "mxbuild/upstream-client"
PIP = f"{CLIENT_VENV}/bin/pip"


def ensure_test_image(ctx, cell: Cell, client: ImageRef, spec: UpstreamTests,
                      logf: IO[str]) -> ImageRef:
    if not spec.pip and not spec.apt:
        return client
    digest = content_hash(client.id, list(spec.pip), list(spec.apt), 2)
    tag = f"{TEST_REPO}:{cell.distro.name}-{digest[:12]}"
    return ensure_tagged(ctx, tag, lambda: _make(ctx, cell, client, spec, tag, logf), logf)


def _make(ctx, cell: Cell, client: ImageRef, spec: UpstreamTests, tag: str, logf: IO[str]):
    """As the client image is made: one container with network (and the extra CA bundle)
    downloads, a second one without either installs offline and is committed."""
    docker, opts = ctx.docker, ctx.opts
    index = ["--index-url", os.environ.get("MXBUILD_INDEX_URL", DEFAULT_INDEX),
             "--disable-pip-version-check"]
    with tempfile.TemporaryDirectory(dir=opts.cache_dir) as tmp:
        with Container(docker, client.ref, label=f"upstream-fetch-{cell.distro.name}",
                       network="bridge", extra_ca=opts.extra_ca_bundle, log_file=logf) as box:
            # what the client image pinned stays (a direct reference cannot constrain)
            box.run(["sh", "-c", f"mkdir -p /tmp/wheelhouse && {PIP} freeze --all | "
                     "grep -v ' @ ' > /tmp/wheelhouse/constraints.txt"])
            try:
                if spec.pip:
                    box.run([PIP, "download", *index, "--dest", "/tmp/wheelhouse",
                             "--constraint", "/tmp/wheelhouse/constraints.txt", *spec.pip])
                if spec.apt:
                    # only what the image lacks is downloaded (maybe nothing)
                    box.run(["sh", "-c", "apt-get update && apt-get install --download-only "
                             "-y --no-install-recommends " + " ".join(spec.apt) + " && mkdir "
                             "-p /tmp/wheelhouse/debs && find /var/cache/apt/archives -name "
                             "'*.deb' -exec cp {} /tmp/wheelhouse/debs/ ';'"],
                            env={"DEBIAN_FRONTEND": "noninteractive"})
            except CommandFailed as exc:
                raise ImageError(f"downloading the upstream tests' requirements failed: "
                                 f"{exc}\n{exc.tail[-1500:]}",
                                 f"check upstream_tests.\"{spec.version}\".pip and .apt in "
                                 f"matrix.yaml against {cell.distro.name} (environment markers "
                                 "such as `; python_version < '3.12'` pick per distro)")
            wheelhouse = box.copy_out("/tmp/wheelhouse", Path(tmp))
        with Container(docker, client.ref, label=f"upstream-{cell.distro.name}",
                       log_file=logf) as box:
            box.copy_into(wheelhouse, "/tmp")
            if spec.apt:
                box.run(["sh", "-c", "set -- /tmp/wheelhouse/debs/*.deb; "
                         "if [ -e \"$1\" ]; then dpkg -i \"$@\"; fi"])
            if spec.pip:
                box.run([PIP, "install", "--no-index", "--no-cache-dir",
                         "--disable-pip-version-check", "--find-links", "/tmp/wheelhouse",
                         "--constraint", "/tmp/wheelhouse/constraints.txt", *spec.pip])
            box.run(["rm", "-rf", "/tmp/wheelhouse"])
            image_id = box.commit(TEST_REPO, tag.split(":", 1)[1],
                                  changes=list(COMMIT_CHANGES))
    return docker.images.get(image_id)
