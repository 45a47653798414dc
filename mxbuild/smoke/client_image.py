"""The smoke client image: the cell's runtime image plus a venv with the MXNet Python
client's dependencies (numpy, pytest…), never the client itself — the smoke installs
mxnet-thin from the repository's index, so only the packaged libmxnet can load."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..containers import CommandFailed, Container
from ..errors import ImageError
from ..fetch import DEFAULT_INDEX
from ..images import ImageRef, content_hash, ensure_tagged
from ..matrix import Cell

CLIENT_REPO = "mxbuild/smoke-client"
CLIENT_VENV = "/opt/mxnet-client"
# Distros whose Python has no numpy MXNet 1.9 was written for (noble, trixie) get the
# removed numpy names back at start-up of the smoke client's interpreter (a .pth file).
NUMPY_COMPAT = "client/mxnet_numpy_compat.py"
# what a committed client image runs with: the venv first on PATH
COMMIT_CHANGES = ('CMD ["/bin/bash"]',
                  f"ENV PATH={CLIENT_VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                  "/usr/bin:/sbin:/bin")


def ensure_client_image(ctx, cell: Cell, runtime: ImageRef, wheel: Path, logf) -> ImageRef:
    """Runtime image + a venv with the MXNet Python client's dependencies (numpy, pytest,
    requests…) but not the client itself: the smoke run installs mxnet-thin from the
    repository's index, so only the packaged libmxnet can ever be loaded.

    Two containers: one with network and the extra CA bundle mounted downloads the
    wheels; a second one, with neither, installs them offline and is committed. A bind
    mount leaves its mount point in a committed layer, so the committed container never
    has one.
    """
    smoke = cell.distro.smoke
    compat = ctx.data.docker / NUMPY_COMPAT
    digest = content_hash(runtime.id, cell.wheel.sha256, smoke.python, list(smoke.pip),
                          smoke.pip_upgrade, smoke.numpy_compat, smoke.wheel_deps,
                          compat.read_text() if smoke.numpy_compat else None, 4)
    tag = f"{CLIENT_REPO}:{cell.distro.name}-{cell.wheel.name}-deps-{digest[:12]}"
    return ensure_tagged(ctx, tag, lambda: _make(ctx, cell, runtime, wheel, tag, compat, logf),
                         logf)


def _make(ctx, cell: Cell, runtime: ImageRef, wheel: Path, tag: str, compat: Path, logf):
    client, opts = ctx.docker, ctx.opts
    smoke = cell.distro.smoke
    requirements = ([f"/tmp/wheel/{wheel.name}", *smoke.pip] if smoke.wheel_deps
                    else list(smoke.pip))
    # Explicit index: old pips default to pypi.python.org, and mirrors must apply here too.
    index = ["--index-url", os.environ.get("MXBUILD_INDEX_URL", DEFAULT_INDEX)]
    with tempfile.TemporaryDirectory(dir=opts.cache_dir) as tmp:
        with Container(client, runtime.ref, label=f"client-fetch-{cell.distro.name}",
                       network="bridge", extra_ca=opts.extra_ca_bundle, log_file=logf) as box:
            box.run(["mkdir", "-p", "/tmp/wheel"])
            box.copy_into(wheel, "/tmp/wheel")
            try:
                box.run([smoke.python, "-m", "venv", "/tmp/fetch"])
                if smoke.pip_upgrade:
                    box.run(["/tmp/fetch/bin/pip", "install", "--upgrade", *index,
                             "--disable-pip-version-check", smoke.pip_upgrade])
                    requirements.append(smoke.pip_upgrade)
                download = ["/tmp/fetch/bin/pip", "download", "--disable-pip-version-check",
                            *index, "--dest", "/tmp/wheelhouse"]
                if not smoke.wheel_deps:
                    box.run([*download, "--no-deps", f"/tmp/wheel/{wheel.name}"])
                box.run([*download, *requirements])
            except CommandFailed as exc:
                raise ImageError(f"downloading the MXNet client's requirements failed: {exc}"
                                 f"\n{exc.tail[-1500:]}",
                                 "if pip cannot reach PyPI over HTTPS, set MXBUILD_CA_BUNDLE "
                                 "to the CA bundle your network needs")
            wheelhouse = box.copy_out("/tmp/wheelhouse", Path(tmp))
        with Container(client, runtime.ref, label=f"client-{cell.distro.name}",
                       log_file=logf) as box:
            box.copy_into(wheelhouse, "/tmp")
            box.run([smoke.python, "-m", "venv", CLIENT_VENV])
            offline = [f"{CLIENT_VENV}/bin/pip", "install", "--no-index", "--no-cache-dir",
                       "--disable-pip-version-check", "--find-links", "/tmp/wheelhouse"]
            if smoke.pip_upgrade:
                box.run([*offline, "--upgrade", smoke.pip_upgrade])
            if smoke.wheel_deps:
                box.run([*offline, f"/tmp/wheelhouse/{wheel.name}", *smoke.pip])
            else:
                box.run([*offline, "--no-deps", f"/tmp/wheelhouse/{wheel.name}"])
                box.run([*offline, *smoke.pip])
            if smoke.numpy_compat:
                box.copy_into(compat, "/tmp")
                box.run(["sh", "-c", f"cd {CLIENT_VENV}/lib/python3*/site-packages && "
                         f"mv /tmp/{compat.name} . && "
                         f"echo 'import {compat.stem}' > {compat.stem}.pth"])
            # Keep its dependencies, drop the official client (its native stack with it).
            box.run([f"{CLIENT_VENV}/bin/pip", "uninstall", "-y", "--disable-pip-version-check",
                     cell.wheel.name])
            box.run(["rm", "-rf", "/tmp/wheelhouse"])
            image_id = box.commit(CLIENT_REPO, tag.split(":", 1)[1],
                                  changes=list(COMMIT_CHANGES))
    return client.images.get(image_id)
