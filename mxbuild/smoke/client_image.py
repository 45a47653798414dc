"""The smoke client image: the cell's runtime image plus a venv with the MXNet Python
client's dependencies (numpy, pytest…), never the client itself — the smoke installs
mxnet-thin from the repository's index, so only the packaged libmxnet can load.

A cell of another architecture (arm64): the same, in its runtime image under emulation
(pip there picks numpy's aarch64 wheels from PyPI); the official wheel (x86_64) is not
installable there, so its Requires-Dist, read on the host, is installed instead."""
from __future__ import annotations

import os
import re
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from ..containers import CommandFailed, Container
from ..errors import ImageError
from ..fetch import DEFAULT_INDEX
from ..images import ImageRef, content_hash, ensure_tagged, foreign
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
    inputs = [runtime.id, cell.official_wheel.sha256, smoke.python, list(smoke.pip),
              smoke.pip_upgrade, smoke.numpy_compat, smoke.wheel_deps,
              compat.read_text() if smoke.numpy_compat else None, 4]
    arch = foreign(cell)
    if arch:   # the amd64 tag stays what it was
        inputs.append({"arch": arch.name, "requirements": requirements_for(cell, wheel)})
    digest = content_hash(*inputs)
    tag = (f"{CLIENT_REPO}:{cell.distro.name}{cell.arch.suffix}-{cell.official_wheel.name}-deps-"
           f"{digest[:12]}")
    return ensure_tagged(ctx, tag, lambda: _make(ctx, cell, runtime, wheel, tag, compat, logf),
                         logf)


def wheel_requirements(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist (without extras' requirements), normalised:
    ["numpy<2.0.0,>1.16.0", "requests<3,>=2.20.0", …]."""
    with zipfile.ZipFile(wheel) as zf:
        name = next((n for n in zf.namelist()
                     if re.match(r"^[^/]+\.dist-info/METADATA$", n)), None)
        if name is None:
            raise ImageError(f"{wheel.name} has no .dist-info/METADATA", "")
        metadata = zf.read(name).decode()
    out = []
    for line in re.findall(r"^Requires-Dist: (.+)$", metadata, re.M):
        try:
            req = Requirement(line.strip())
        except InvalidRequirement as exc:
            raise ImageError(f"{wheel.name}: Requires-Dist {line!r}: {exc}", "")
        if req.marker is None or "extra" not in str(req.marker):
            out.append(str(req))
    return out


def requirements_for(cell: Cell, wheel: Path) -> list[str]:
    """What a foreign-architecture client image installs: the official wheel's own
    requirements (unless the distro lists them itself, wheel_deps: false) and the
    distro's smoke pins."""
    smoke = cell.distro.smoke
    return (wheel_requirements(wheel) if smoke.wheel_deps else []) + list(smoke.pip)


# params: the client image's inputs, computed once by its caller
def _make(ctx, cell: Cell, runtime: ImageRef, wheel: Path, tag: str, compat: Path, logf):
    client, opts = ctx.docker, ctx.opts
    smoke = cell.distro.smoke
    # another architecture cannot install the (x86_64) official wheel: its requirements
    # instead, and pip under emulation picks their wheels for that architecture
    native_wheel = foreign(cell) is None
    if native_wheel:
        requirements = ([f"/tmp/wheel/{wheel.name}", *smoke.pip] if smoke.wheel_deps
                        else list(smoke.pip))
    else:
        requirements = requirements_for(cell, wheel)
        logf.write(f"{cell.arch.name} client: {wheel.name} is not installable here; its "
                   f"requirements and the distro's pins: {' '.join(requirements)}\n")
    # Explicit index: old pips default to pypi.python.org, and mirrors must apply here too.
    index = ["--index-url", os.environ.get("MXBUILD_INDEX_URL", DEFAULT_INDEX)]
    label = f"{cell.distro.name}{cell.arch.suffix}"
    with tempfile.TemporaryDirectory(dir=opts.cache_dir) as tmp:
        with Container(client, runtime.ref, label=f"client-fetch-{label}",
                       network="bridge", extra_ca=opts.extra_ca_bundle, log_file=logf) as box:
            box.run(["mkdir", "-p", "/tmp/wheel"])
            if native_wheel:
                box.copy_into(wheel, "/tmp/wheel")
            try:
                box.run([smoke.python, "-m", "venv", "/tmp/fetch"])
                if smoke.pip_upgrade:
                    box.run(["/tmp/fetch/bin/pip", "install", "--upgrade", *index,
                             "--disable-pip-version-check", smoke.pip_upgrade])
                    requirements.append(smoke.pip_upgrade)
                download = ["/tmp/fetch/bin/pip", "download", "--disable-pip-version-check",
                            *index, "--dest", "/tmp/wheelhouse"]
                if native_wheel and not smoke.wheel_deps:
                    box.run([*download, "--no-deps", f"/tmp/wheel/{wheel.name}"])
                box.run([*download, *requirements])
            except CommandFailed as exc:
                raise ImageError(f"downloading the MXNet client's requirements failed: {exc}"
                                 f"\n{exc.tail[-1500:]}",
                                 "if pip cannot reach PyPI over HTTPS, set MXBUILD_CA_BUNDLE "
                                 "to the CA bundle your network needs")
            wheelhouse = box.copy_out("/tmp/wheelhouse", Path(tmp))
        with Container(client, runtime.ref, label=f"client-{label}", log_file=logf) as box:
            box.copy_into(wheelhouse, "/tmp")
            box.run([smoke.python, "-m", "venv", CLIENT_VENV])
            offline = [f"{CLIENT_VENV}/bin/pip", "install", "--no-index", "--no-cache-dir",
                       "--disable-pip-version-check", "--find-links", "/tmp/wheelhouse"]
            if smoke.pip_upgrade:
                box.run([*offline, "--upgrade", smoke.pip_upgrade])
            if not native_wheel:
                box.run([*offline, *requirements])
            elif smoke.wheel_deps:
                box.run([*offline, f"/tmp/wheelhouse/{wheel.name}", *smoke.pip])
            else:
                box.run([*offline, "--no-deps", f"/tmp/wheelhouse/{wheel.name}"])
                box.run([*offline, *smoke.pip])
            if smoke.numpy_compat:
                box.copy_into(compat, "/tmp")
                box.run(["sh", "-c", f"cd {CLIENT_VENV}/lib/python3*/site-packages && "
                         f"mv /tmp/{compat.name} . && "
                         f"echo 'import {compat.stem}' > {compat.stem}.pth"])
            if native_wheel:
                # Keep its dependencies, drop the official client (its native stack with it).
                box.run([f"{CLIENT_VENV}/bin/pip", "uninstall", "-y",
                         "--disable-pip-version-check", cell.official_wheel.name])
            box.run(["rm", "-rf", "/tmp/wheelhouse"])
            image_id = box.commit(CLIENT_REPO, tag.split(":", 1)[1],
                                  changes=list(COMMIT_CHANGES))
    return client.images.get(image_id)
