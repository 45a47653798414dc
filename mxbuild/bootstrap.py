"""Host-side base image bootstrap: the distro's archive key (pinned fingerprint only), a
minimal root filesystem, imported into the engine as a one-layer image."""
from __future__ import annotations

import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import IO

from .errors import ImageError
from .fetch import fetch_pinned
from .matrix import BootstrapSpec, Distro


def bootstrap_inputs(spec: BootstrapSpec) -> dict:
    fields = {k: v for k, v in asdict(spec).items() if v is not None}
    return {"method": "debootstrap --variant=minbase", **fields, "format": 1}


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


def bootstrap_image(client, distro: Distro, tag: str, cache_dir: Path, logf: IO[str]):
    spec = distro.base.bootstrap
    work = cache_dir / "bootstrap"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        tmp = Path(tmp)
        keyring = verify_archive_key(spec, tmp / "archive-key.gpg",
                                     keyring_file(spec, cache_dir / "downloads", tmp))
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
