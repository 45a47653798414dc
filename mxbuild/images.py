"""Base images (bootstrap or registry digest), build and runtime images, images.lock.

Tags are content hashes of everything that goes into an image, so an image whose
inputs did not change is found by its tag and never rebuilt.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import docker
import jinja2
from docker.errors import APIError, ImageNotFound

from .containers import Container, CommandFailed
from .fetch import DEFAULT_INDEX, fetch_pinned
from .errors import ImageError
from .log import log
from .matrix import BootstrapSpec, Cell, Distro
from .options import Options

BASE_REPO = "mxbuild/base"
BUILD_REPO = "mxbuild/build"
RUNTIME_REPO = "mxbuild/runtime"
COMPILE_REPO = "mxbuild/compile"
CLIENT_REPO = "mxbuild/smoke-client"
CLIENT_VENV = "/opt/mxnet-client"
# Distros whose Python has no numpy MXNet 1.9 was written for (noble, trixie) get the
# removed numpy names back at start-up of the smoke client's interpreter (a .pth file).
NUMPY_COMPAT = "client/mxnet_numpy_compat.py"


@dataclass(frozen=True)
class ImageRef:
    ref: str   # what FROM / run uses: a tag or name@sha256:…
    id: str    # the engine's image id (sha256:…), the pin


def content_hash(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def _templates(opts: Options) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(opts.root / "docker")),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render(opts: Options, template: str, **values) -> str:
    return _templates(opts).get_template(template).render(**values)


def _find(client: docker.DockerClient, ref: str):
    try:
        return client.images.get(ref)
    except ImageNotFound:
        return None


# ------------------------------------------------------------------ images.lock

class Lock:
    """images.lock: the digest of every base image, keyed by distro name."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, dict] = json.loads(path.read_text()) if path.exists() else {}

    def get(self, distro: str) -> dict | None:
        return self.entries.get(distro)

    def record(self, distro: str, entry: dict) -> None:
        # Re-read under a lock: runs building other distros may record meanwhile.
        with open(self.path.with_suffix(".lock"), "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            current = json.loads(self.path.read_text()) if self.path.exists() else {}
            current[distro] = entry
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
            tmp.replace(self.path)
            self.entries = current


# ------------------------------------------------------------------ base images

def bootstrap_inputs(spec: BootstrapSpec) -> dict:
    fields = {k: v for k, v in asdict(spec).items() if v is not None}
    return {"method": "debootstrap --variant=minbase", **fields, "format": 1}


def base_tag(distro: Distro) -> str:
    """The engine tag of a distro's base image: its registry reference, or a tag keyed by
    the bootstrap inputs."""
    if distro.base.image:
        return distro.base.image
    return f"{BASE_REPO}:{distro.name}-{content_hash(bootstrap_inputs(distro.base.bootstrap))[:12]}"


def template_tag(repo: str, label: str, dockerfile: str) -> str:
    return f"{repo}:{label}-{content_hash(dockerfile)[:12]}"


def planned_images(client, cell: Cell, opts: Options) -> list[tuple[str, str, bool]]:
    """(role, tag, present in the engine) of the images the image stage needs, without
    building anything. Tags that depend on a missing image are reported as unknown."""
    base_ref = base_tag(cell.distro)
    base = _find(client, base_ref)
    out = [("base", base_ref, base is not None)]
    for role, repo, template in (("build", BUILD_REPO, "build.Dockerfile.j2"),
                                 ("runtime", RUNTIME_REPO, "runtime.Dockerfile.j2")):
        if base is None:
            out.append((role, f"{repo}:{cell.distro.name}-<after base>", False))
            continue
        text = render(opts, template, base=ImageRef(base_ref, base.id), distro=cell.distro)
        tag = template_tag(repo, cell.distro.name, text)
        out.append((role, tag, _find(client, tag) is not None))
    return out


def ensure_base(client, distro: Distro, opts: Options, logf: IO[str]) -> ImageRef:
    lock = Lock(opts.lock_path)
    pinned = lock.get(distro.name)
    if distro.base.image:
        return _ensure_registry_base(client, distro, lock, pinned)
    inputs = bootstrap_inputs(distro.base.bootstrap)
    digest = content_hash(inputs)
    tag = base_tag(distro)
    image = _find(client, tag)
    if image is not None:
        if pinned and pinned.get("inputs") == digest and pinned.get("id") != image.id:
            log.warning("images.lock pins %s for %s but this engine has %s for the same inputs; "
                        "using the local image and updating images.lock", pinned.get("id"),
                        distro.name, image.id)
        if not pinned or pinned.get("id") != image.id:
            lock.record(distro.name, _lock_entry(tag, digest, image))
        logf.write(f"reusing base image {tag} ({image.id})\n")
        return ImageRef(tag, image.id)
    image = _bootstrap(client, distro, tag, opts, logf)
    if pinned and pinned.get("inputs") == digest and pinned.get("id") != image.id:
        # A bootstrap from a moving archive is not bit-identical: say so, never hide it.
        log.warning("base image for %s drifted: images.lock had %s, bootstrap produced %s "
                    "(same inputs: a bootstrap is not bit-identical across runs); "
                    "images.lock updated",
                    distro.name, pinned.get("id"), image.id)
    lock.record(distro.name, _lock_entry(tag, digest, image))
    return ImageRef(tag, image.id)


def _lock_entry(tag: str, digest: str, image) -> dict:
    return {"kind": "bootstrap", "tag": tag, "inputs": digest, "id": image.id,
            "layers": image.attrs.get("RootFS", {}).get("Layers", []),
            "created": image.attrs.get("Created")}


def pull_pinned(client, ref: str, alternative: str):
    """The image of a registry reference pinned by digest (name@sha256:…): from the engine
    if it has it, else pulled; its repo digests must include the pinned one."""
    want = ref.split("@", 1)[1]
    image = _find(client, ref)
    if image is None:
        try:
            name, digest = ref.split("@", 1)
            image = client.images.pull(name, tag=digest)
        except APIError as exc:
            raise ImageError(f"cannot pull {ref}: {exc.explanation or exc}",
                             f"make the registry reachable, `docker load` the image, or "
                             f"{alternative}")
    if not any(d.endswith("@" + want) for d in image.attrs.get("RepoDigests", [])):
        raise ImageError(f"{ref}: the local image's repo digests {image.attrs.get('RepoDigests')} "
                         f"do not include {want}", "remove the local image and pull it again")
    return image


def _ensure_registry_base(client, distro: Distro, lock: Lock, pinned) -> ImageRef:
    ref = distro.base.image
    image = pull_pinned(client, ref, "give the distro a `bootstrap:` base in matrix.yaml")
    if pinned and pinned.get("ref") == ref and pinned.get("id") != image.id:
        log.warning("images.lock pinned %s to %s, engine has %s", ref, pinned.get("id"), image.id)
    if not pinned or pinned.get("id") != image.id or pinned.get("ref") != ref:
        lock.record(distro.name, {"kind": "registry", "ref": ref, "id": image.id})
    return ImageRef(ref, image.id)


def keyring_file(spec: BootstrapSpec, cache_dir: Path, work: Path) -> Path:
    """The archive keyring: a host file, or extracted from a sha256-pinned .deb."""
    if spec.keyring_package is None:
        return Path(spec.keyring)
    kp = spec.keyring_package
    deb = fetch_pinned(kp.url, kp.sha256, cache_dir)
    out = work / "keyring-package"
    proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageError(f"cannot unpack {deb.name}: {proc.stderr.strip()}", "")
    return out / kp.path.lstrip("/")


def verify_archive_key(spec: BootstrapSpec, dest: Path, keyring: Path | None = None) -> Path:
    """Export exactly the pinned key from the keyring; refuse if it is not there."""
    keyring = keyring or Path(spec.keyring)
    if not keyring.is_file():
        raise ImageError(f"archive keyring {keyring} does not exist",
                         "install the distro's archive keyring package (debian-archive-keyring) "
                         "or fix `keyring` in matrix.yaml")
    listing = subprocess.run(
        ["gpg", "--batch", "--no-default-keyring", "--keyring", str(keyring),
         "--with-colons", "--list-keys", spec.key_fingerprint], capture_output=True, text=True)
    fprs = [line.split(":")[9] for line in listing.stdout.splitlines() if line.startswith("fpr:")]
    if listing.returncode != 0 or spec.key_fingerprint not in fprs:
        raise ImageError(f"key {spec.key_fingerprint} is not in {keyring}",
                         "update the keyring package, or correct key_fingerprint in matrix.yaml")
    exported = subprocess.run(
        ["gpg", "--batch", "--no-default-keyring", "--keyring", str(keyring),
         "--export", spec.key_fingerprint], capture_output=True)
    dest.write_bytes(exported.stdout)
    return dest


def _bootstrap(client, distro: Distro, tag: str, opts: Options, logf: IO[str]):
    spec = distro.base.bootstrap
    work = opts.cache_dir / "bootstrap"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        tmp = Path(tmp)
        keyring = verify_archive_key(spec, tmp / "archive-key.gpg",
                                     keyring_file(spec, opts.cache_dir / "downloads", tmp))
        rootfs = tmp / "rootfs"
        cmd = ["debootstrap", "--variant=minbase", "--force-check-gpg",
               f"--keyring={keyring}", f"--components={','.join(spec.components)}",
               spec.suite, str(rootfs), spec.mirror] + ([spec.script] if spec.script else [])
        _host_run(cmd, logf, "debootstrap failed (see the log); check the mirror and the key")
        # Caches and logs of the bootstrap itself are not part of the image.
        _host_run(["sh", "-c", f"cd {rootfs} && rm -rf var/cache/apt/archives/*.deb "
                   "var/cache/apt/*.bin var/lib/apt/lists/* var/log/*"], logf, "cleanup failed")
        tar = tmp / "rootfs.tar"
        _host_run(["tar", "--numeric-owner", "--sort=name", "-C", str(rootfs), "-cf", str(tar),
                   "."], logf, "packing the rootfs failed")
        repo, tagname = tag.split(":")
        logf.write(f"docker import {tar} {tag}\n")
        client.api.import_image_from_file(str(tar), repository=repo, tag=tagname,
                                          changes=["ENV LANG=C.UTF-8", 'CMD ["/bin/bash"]'])
    image = client.images.get(tag)
    logf.write(f"imported {tag} as {image.id}\n")
    return image


def _host_run(cmd: list[str], logf: IO[str], problem: str) -> None:
    logf.write("$ " + " ".join(cmd) + "\n")
    logf.flush()
    # Streamed line by line: the log may be any text stream, and debootstrap is long.
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace") as proc:
        for line in proc.stdout:
            logf.write(line)
    if proc.returncode != 0:
        raise ImageError(f"`{cmd[0]}` exited with {proc.returncode}: {problem}", "")


# ------------------------------------------------------------------ derived images

def build_from_template(client, repo: str, label: str, dockerfile: str, logf: IO[str]) -> ImageRef:
    tag = template_tag(repo, label, dockerfile)
    image = _find(client, tag)
    if image is not None:
        logf.write(f"reusing {tag} ({image.id})\n")
        return ImageRef(tag, image.id)
    logf.write(f"building {tag}\n--- Dockerfile\n{dockerfile}---\n")
    errors = []
    # APIClient.build never raises on a failed step: the failure is an `error` chunk.
    for chunk in client.api.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True,
                                  forcerm=True, pull=False, decode=True):
        if "stream" in chunk:
            logf.write(chunk["stream"])
        if "error" in chunk:
            errors.append(chunk["error"])
            logf.write("ERROR: " + chunk["error"] + "\n")
    logf.flush()
    if errors:
        raise ImageError(f"building {tag} failed: {errors[-1].strip()[:300]}", "")
    image = client.images.get(tag)
    return ImageRef(tag, image.id)


def ensure_build_image(client, cell: Cell, base: ImageRef, opts: Options, logf) -> ImageRef:
    text = render(opts, "build.Dockerfile.j2", base=base, distro=cell.distro)
    return build_from_template(client, BUILD_REPO, cell.distro.name, text, logf)


def compile_packages(opts: Options, cell: Cell) -> list[str]:
    listed = (opts.root / "recipes/compile/build-deps.txt").read_text().splitlines()
    packages = [p.strip() for p in listed if p.strip() and not p.startswith("#")]
    toolkit = cell.compile.toolkit_package if cell.compile else None
    return packages + ([toolkit] if toolkit else [])


def ensure_compile_image(client, cell: Cell, build: ImageRef, opts: Options, logf) -> ImageRef:
    """The build image plus MXNet's build dependencies, or, for a GPU preset pinned to
    NVIDIA's CUDA devel image, that image plus the same dependencies."""
    toolkit_image = cell.compile.toolkit_image if cell.compile else None
    if toolkit_image:
        pull_pinned(client, toolkit_image, "set variants.<variant>.compile.toolkit to "
                    "{package: nvidia-cuda-toolkit} where the distro carries the toolkit")
    text = render(opts, "compile.Dockerfile.j2", build=build, distro=cell.distro,
                  toolkit_image=toolkit_image,
                  toolkit_package=cell.compile.toolkit_package if cell.compile else None,
                  packages=compile_packages(opts, cell))
    return build_from_template(client, COMPILE_REPO, f"{cell.distro.name}-{cell.variant}",
                               text, logf)


def ensure_runtime_image(client, cell: Cell, base: ImageRef, opts: Options, logf) -> ImageRef:
    text = render(opts, "runtime.Dockerfile.j2", base=base, distro=cell.distro)
    return build_from_template(client, RUNTIME_REPO, cell.distro.name, text, logf)


def ensure_client_image(client, cell: Cell, runtime: ImageRef, wheel: Path, opts: Options,
                        logf) -> ImageRef:
    """Runtime image + a venv with the MXNet Python client's dependencies (numpy, pytest,
    requests…) but not the client itself: the smoke run installs mxnet-thin from the
    repository's index, so only the packaged libmxnet can ever be loaded.

    Two containers: one with network and the extra CA bundle mounted downloads the
    wheels; a second one, with neither, installs them offline and is committed. A bind
    mount leaves its mount point in a committed layer, so the committed container never
    has one.
    """
    smoke = cell.distro.smoke
    compat = opts.root / "docker" / NUMPY_COMPAT
    digest = content_hash(runtime.id, cell.wheel.sha256, smoke.python, list(smoke.pip),
                          smoke.pip_upgrade, smoke.numpy_compat, smoke.wheel_deps,
                          compat.read_text() if smoke.numpy_compat else None, 4)
    tag = f"{CLIENT_REPO}:{cell.distro.name}-{cell.wheel.name}-deps-{digest[:12]}"
    image = _find(client, tag)
    if image is not None:
        logf.write(f"reusing {tag} ({image.id})\n")
        return ImageRef(tag, image.id)
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
            image_id = box.commit(CLIENT_REPO, tag.split(":", 1)[1], changes=[
                'CMD ["/bin/bash"]',
                f"ENV PATH={CLIENT_VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                "/usr/bin:/sbin:/bin"])
    return ImageRef(tag, image_id)
