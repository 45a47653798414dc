"""Reproducible base images: a distro's root filesystem from its archive, loaded into the
engine with an image id that depends only on the installed files.

    result = bootstrap_image(client, spec, "mxbuild/base:debian12-…", epoch=EPOCH,
                             work=Path(".cache/mxbuild/bootstrap"),
                             cache_dir=Path(".cache/mxbuild"), logf=log_file)
    result.image_id      # sha256:… — the same on every machine for the same package set
    result.packages      # {"libc6": "2.36-9+deb12u9", …}: what to record next to the id
    package_drift(old_packages, result.packages)   # ["libc6 2.36-9+deb12u7 → 2.36-9+deb12u9"]

``bootstrap_rootfs`` does steps 1-5 below without an engine (the rootfs tar, its sha256 and
package set); ``image_id_for`` gives the image id that tar becomes, also without an engine.

How (``bootstrap_image``):

1. The archive key: only ``spec.key_fingerprint`` is exported (``verify_archive_key``) from
   the keyring (a host file, or the sha256-pinned keyring .deb, ``keyring_file``) into a
   one-key keyring. The tool's apt/gpgv trusts that file and nothing else: mmdebstrap gets
   it as both ``Dir::Etc::Trusted`` and the only file in ``Dir::Etc::TrustedParts`` (with
   ``--keyring=FILE`` alone the host's /etc/apt/trusted.gpg.d would still be trusted);
   debootstrap gets ``--keyring=FILE --force-check-gpg`` as before.
2. The tool (``tool_for``): ``mmdebstrap --variant=apt --include=passwd`` (Essential:yes
   + apt + useradd: what the Dockerfiles need) with ``SOURCE_DATE_EPOCH=epoch``, or
   ``debootstrap --variant=minbase`` for the suites in ``DEBOOTSTRAP_SUITES``.
   merged-/usr follows what debootstrap does for the suite (split only in
   ``SPLIT_USR_SUITES``), so the layout of every image stays what it was.
3. Downloaded .debs are kept per mirror and suite under ``cache_dir/bootstrap-debs``. They
   reach mmdebstrap only after their sha256 matched the suite's Packages index, which apt
   fetched and verified against the pinned key just before (apt itself checks only the
   size of a .deb already in its archive directory); debootstrap checks its --cache-dir
   itself.
4. The same tidy-up for both tools (``tidy_rootfs``): apt lists and caches, logs,
   /dev nodes, /tmp, /run, the host's /etc/resolv.conf and /etc/hostname (Docker mounts
   its own), ldconfig's aux-cache; shadow's last-change dates set to the epoch's day.
   The image's apt must verify the archive by itself later (``apt-get update`` in the
   Dockerfiles): /etc/apt/sources.list must name the mirror, suite and components, and a
   key file in the rootfs must hold the pinned fingerprint (the distro's keyring package
   provides it; if not, the pinned key goes to /etc/apt/trusted.gpg.d).
5. The rootfs tar (``pack_rootfs``): written here, not by the tool: names sorted
   bytewise, numeric owners and empty owner names, mtimes clamped to the epoch, hard
   links by first name, GNU format. Its sha256 is the layer's diff id.
6. The image (``image_config``, ``write_docker_archive``): a docker-archive with one
   uncompressed layer and a config whose ``created`` is the epoch (``docker import`` writes
   the current time), loaded with ``client.images.load`` and tagged by its manifest's
   RepoTags. The engine's image id is the sha256 of the config bytes, so it is a function
   of (layer, epoch, tool name, suite) only.

What makes two results equal: the same package set (``packages``), the same ``epoch``,
the same tool version (a different mmdebstrap may write a file differently; the version is
in ``Bootstrapped.tool_version``) and the same procedure here (``method`` names it: put it
into the inputs the base tag hashes; adding ``--include=passwd`` alone changed bionic's
bytes, by a 0-byte /var/lib/dpkg/lock-frontend). Not the machine, not the time of day.

The seed hook runs ``python -m mxbuild.bootstrap seed-debs CHROOT CACHE`` with the
caller's interpreter, so this module must stay importable under that name.

Another architecture (``arch``: an arm64 base on an amd64 machine): ``for_arch`` gives
the spec whose ``mirror`` serves it, mmdebstrap gets ``--arch=<name>`` (its maintainer
scripts run under qemu-user through binfmt_misc: emulation.py), the .deb cache is its own,
and the image config says ``architecture``/``variant`` (``docker import --platform`` would
still record amd64). ``arch=None`` is the host's (primary) architecture: the command,
config and so the image id are what they were before architectures existed.

``epoch`` must not come from the clock: pass a constant (it is written into the image as
its creation time and clamps every mtime).

This module never imports mxbuild.images; ``verify_archive_key`` and ``keyring_file`` are
the ones from images.py with their behaviour unchanged.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from .errors import ImageError
from .fetch import fetch_pinned, sha256_file
from .matrix import Architecture, BootstrapSpec

MMDEBSTRAP_VARIANT = "apt"
# On top of the variant: useradd for the build image (docker/build.Dockerfile.j2). apt
# pulls passwd in through adduser up to bookworm; trixie's apt does not.
MMDEBSTRAP_INCLUDE = ("passwd",)
DEBOOTSTRAP_VARIANT = "minbase"
# Suites mmdebstrap cannot bootstrap here (see bench/bootstrap-notes.md for the error).
DEBOOTSTRAP_SUITES = frozenset({
    # xenial's Essential `init` pulls systemd into the one `dpkg --install` of the
    # essential set; systemd's postinst runs adduser → chfn before libpam-runtime has
    # written /etc/pam.d/common-*: "chfn: PAM: Critical error - immediate abort"
    # (any variant: the essential set is the same).
    "xenial",
})
# Suites debootstrap (and so today's images) leaves split-/usr: /bin, /sbin, /lib are
# directories (debootstrap's scripts/gutsy blacklist). Every other suite is merged-/usr.
SPLIT_USR_SUITES = frozenset({"xenial", "bionic"})
IMAGE_ENV = ("LANG=C.UTF-8",)
IMAGE_CMD = ("/bin/bash",)
PINNED_KEY_NAME = "mxbuild-pinned-archive-key.gpg"
# Removed from every rootfs (relative globs), what images.py's bootstrap removed plus
# what a tool leaves from the host or the moment of the run.
TIDY_GLOBS = (
    "var/cache/apt/archives/*.deb", "var/cache/apt/archives/partial/*",
    "var/cache/apt/*.bin", "var/lib/apt/lists/*", "var/log/*",
    "dev/*", "tmp/*", "run/*", "var/tmp/*",
    "etc/resolv.conf", "etc/hostname",
    "var/cache/ldconfig/aux-cache",
    "var/lib/dbus/machine-id",
    # journalctl --update-catalog (systemd's postinst, xenial): a binary index whose
    # bytes differ from run to run; no journald runs in a container
    "var/lib/systemd/catalog/database",
)


@dataclass(frozen=True)
class Bootstrapped:
    tool: str                  # "mmdebstrap" or "debootstrap"
    rootfs_sha256: str         # sha256 of the rootfs tar that became the image's one layer
    image_id: str              # the engine's image id (sha256:…), sha256 of the config
    packages: dict[str, str]   # every installed package -> version (dpkg status in the rootfs)
    seconds: float
    tool_version: str = ""     # e.g. "mmdebstrap 1.3.5"
    rootfs_bytes: int = 0      # size of the rootfs tar


def tool_for(spec: BootstrapSpec) -> str:
    return "debootstrap" if spec.suite in DEBOOTSTRAP_SUITES else "mmdebstrap"


def method(spec: BootstrapSpec) -> str:
    """What images.lock / the base tag should hash as the bootstrap method."""
    if tool_for(spec) == "debootstrap":
        return f"debootstrap --variant={DEBOOTSTRAP_VARIANT} (tidied, packed by mxbuild)"
    return (f"mmdebstrap --variant={MMDEBSTRAP_VARIANT} --include={','.join(MMDEBSTRAP_INCLUDE)}"
            " (tidied, packed by mxbuild)")


# ------------------------------------------------------------------ archive key

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


def key_fingerprints(path: Path) -> set[str]:
    """Primary and subkey fingerprints in a keyring file (binary or armored)."""
    with tempfile.TemporaryDirectory() as home:
        proc = subprocess.run(["gpg", "--batch", "--homedir", home, "--with-colons",
                               "--show-keys", str(path)], capture_output=True, text=True)
    return {line.split(":")[9] for line in proc.stdout.splitlines() if line.startswith("fpr:")}


# ------------------------------------------------------------------ the public entry

@dataclass(frozen=True)
class Rootfs:
    tool: str
    sha256: str                # of the tar at `path`
    packages: dict[str, str]
    bytes: int
    tool_version: str
    phases: dict[str, float]   # seconds per phase


def for_arch(spec: BootstrapSpec, arch: Architecture | None) -> BootstrapSpec:
    """The spec as `arch`'s bootstrap reads it: `mirror` is the archive serving `arch`
    (ImageError if matrix.yaml names none)."""
    if arch is None or not spec.arch_mirrors:
        return spec
    mirror = spec.mirror_for(arch.name)
    if mirror is None:
        raise ImageError(f"no mirror for {arch.name} in the bootstrap of {spec.suite}",
                         f"add {arch.name}: URL under its bootstrap's mirror in matrix.yaml")
    return replace(spec, mirror=mirror, arch_mirrors=())


# params: keyword-only, each an input of the bootstrap
def bootstrap_rootfs(spec: BootstrapSpec, dest: Path, *, epoch: int, work: Path,
                     cache_dir: Path, logf: IO[str],
                     arch: Architecture | None = None) -> Rootfs:
    """Bootstrap spec's suite and write its tidied rootfs as the tar `dest` (steps 1-5
    of the module docstring; no engine needed). `arch`: another architecture than the
    host's (None: the host's)."""
    spec = for_arch(spec, arch)
    tool = tool_for(spec)
    work.mkdir(parents=True, exist_ok=True)
    phases: dict[str, float] = {}

    def phase(name: str, since: float) -> float:
        now = time.monotonic()
        phases[name] = round(now - since, 1)
        return now

    with tempfile.TemporaryDirectory(dir=work, prefix=f"{spec.suite}-") as tmp:
        tmp = Path(tmp)
        rootfs = tmp / "rootfs"
        key = _pinned_key(spec, cache_dir, tmp)
        debs = deb_cache_dir(cache_dir, spec, arch)
        t = time.monotonic()
        try:
            if tool == "mmdebstrap":
                run_mmdebstrap(spec, rootfs, key, epoch, debs, tmp, logf, arch)
            else:
                run_debootstrap(spec, rootfs, key, epoch, debs, logf, arch)
            t = phase(tool, t)
            tidy_rootfs(rootfs, epoch, logf)
            ensure_apt_source(rootfs, spec, logf)
            ensure_apt_trusts(rootfs, spec, key, logf)
            packages = installed_packages(rootfs, arch.name if arch else None)
            dropped: list[str] = []
            sha256 = pack_rootfs(rootfs, dest, epoch, dropped)
        finally:
            _remove_tree(rootfs)     # root-owned, possibly with read-only directories
        for line in dropped:
            logf.write(f"xattrs not kept: {line}\n")
        size = dest.stat().st_size
        logf.write(f"rootfs tar {size} bytes, sha256 {sha256}, {len(packages)} packages\n")
        phase("tidy+pack", t)
    return Rootfs(tool=tool, sha256=sha256, packages=packages, bytes=size,
                  tool_version=tool_version(tool), phases=phases)


# params: keyword-only, each an input of the bootstrap
def bootstrap_image(client, spec: BootstrapSpec, tag: str, *, epoch: int, work: Path,
                    cache_dir: Path, logf: IO[str],
                    arch: Architecture | None = None) -> Bootstrapped:
    """Bootstrap spec's suite (for `arch`, None: the host's), pack it, load it as `tag`;
    see the module docstring."""
    start = time.monotonic()
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix=f"{spec.suite}-image-") as tmp:
        tmp = Path(tmp)
        layer = tmp / "rootfs.tar"
        rootfs = bootstrap_rootfs(spec, layer, epoch=epoch, work=work, cache_dir=cache_dir,
                                  logf=logf, arch=arch)
        t = time.monotonic()
        config = image_config(rootfs.sha256, epoch, created_by(spec, arch), arch)
        archive = tmp / "image.tar"
        write_docker_archive(layer, config, tag, epoch, archive)
        layer.unlink()
        image_id = load_image(client, archive, tag, "sha256:" + hashlib.sha256(config).hexdigest())
        phases = {**rootfs.phases, "archive+load": round(time.monotonic() - t, 1)}
        logf.write(f"loaded {tag} as {image_id}\n")
    seconds = round(time.monotonic() - start, 1)
    logf.write("seconds: " + ", ".join(f"{k} {v}" for k, v in phases.items())
               + f", total {seconds}\n")
    return Bootstrapped(tool=rootfs.tool, rootfs_sha256=rootfs.sha256, image_id=image_id,
                        packages=rootfs.packages, seconds=seconds,
                        tool_version=rootfs.tool_version, rootfs_bytes=rootfs.bytes)


def created_by(spec: BootstrapSpec, arch: Architecture | None = None) -> str:
    """The image history's created_by (part of the config, so of the image id)."""
    return f"{tool_for(spec)} {spec.suite}{f' {arch.name}' if arch else ''} (mxbuild)"


def image_id_for(spec: BootstrapSpec, rootfs_sha256: str, epoch: int,
                 arch: Architecture | None = None) -> str:
    """The image id bootstrap_image's engine reports for this rootfs: no engine needed."""
    return "sha256:" + hashlib.sha256(
        image_config(rootfs_sha256, epoch, created_by(spec, arch), arch)).hexdigest()


def package_drift(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """What changed between two package sets, one line per package, sorted by name:
    "libc6 2.36-9+deb12u7 → 2.36-9+deb12u9", "+foo 1.0" (new), "-bar 2.0" (gone)."""
    lines = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None:
            lines.append(f"+{name} {after}")
        elif after is None:
            lines.append(f"-{name} {before}")
        else:
            lines.append(f"{name} {before} → {after}")
    return lines


def tool_version(tool: str) -> str:
    if tool == "mmdebstrap":
        proc = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True)
        return proc.stdout.strip()
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "debootstrap"],
                          capture_output=True, text=True)
    return f"debootstrap {proc.stdout.strip()}"


# ------------------------------------------------------------------ the tools

def _pinned_key(spec: BootstrapSpec, cache_dir: Path, tmp: Path) -> Path:
    """A directory holding one file, the pinned key alone; returns that file."""
    keydir = tmp / "trusted.gpg.d"
    keydir.mkdir()
    return verify_archive_key(spec, keydir / "archive-key.gpg",
                              keyring_file(spec, cache_dir / "downloads", tmp))


def deb_cache_dir(cache_dir: Path, spec: BootstrapSpec,
                  arch: Architecture | None = None) -> Path:
    """Per mirror, suite and tool; another architecture's has its own (a run leaves in
    its cache what it used, which would empty the other architecture's)."""
    mirror = hashlib.sha256(spec.mirror.encode()).hexdigest()[:8]
    path = cache_dir / "bootstrap-debs" / (f"{spec.suite}-{mirror}-{tool_for(spec)}"
                                           + (f"-{arch.name}" if arch else ""))
    path.mkdir(parents=True, exist_ok=True)
    return path


def source_line(spec: BootstrapSpec) -> str:
    return f"deb {spec.mirror} {spec.suite} {' '.join(spec.components)}"


def _tool_env(epoch: int, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "http_proxy",
                                                         "https_proxy", "no_proxy")}
    env.update(SOURCE_DATE_EPOCH=str(epoch), TMPDIR=str(tmp), LC_ALL="C.UTF-8",
               DEBIAN_FRONTEND="noninteractive")
    return env


# params: the bootstrap's inputs and scratch paths, each distinct
def run_mmdebstrap(spec: BootstrapSpec, rootfs: Path, key: Path, epoch: int, debs: Path,
                   tmp: Path, logf: IO[str], arch: Architecture | None = None) -> None:
    seeded = tmp / "debs-out"
    seeded.mkdir()
    hooks = [
        # Seed apt's archive directory with cached .debs whose sha256 the (just
        # verified) Packages index confirms. Runs `apt-get update` for the hooks after it.
        "--setup-hook=" + " ".join(shlex.quote(a) for a in
                                   [sys.executable, "-m", "mxbuild.bootstrap", "seed-debs"])
        + f' "$1" {shlex.quote(str(debs))}',
    ]
    if spec.suite not in SPLIT_USR_SUITES:
        hooks += ["--setup-hook=" + MERGED_USR_SETUP, "--essential-hook=" + MERGED_USR_ESSENTIAL]
    hooks.append("--customize-hook=cp -p \"$1\"/var/cache/apt/archives/*.deb "
                 f"{shlex.quote(str(seeded))}/ 2>/dev/null || true")
    include = [f"--include={','.join(MMDEBSTRAP_INCLUDE)}"] if MMDEBSTRAP_INCLUDE else []
    cmd = ["mmdebstrap", "--mode=root", f"--variant={MMDEBSTRAP_VARIANT}", *include,
           *([f"--arch={arch.name}"] if arch else []),
           "--format=directory",
           f"--keyring={key.parent}", f"--keyring={key}",
           "--skip=check/signed-by", "--skip=essential/unlink", *hooks,
           spec.suite, str(rootfs), source_line(spec)]
    _host_run(cmd, logf, "mmdebstrap failed (see the log); check the mirror and the key",
              env=_tool_env(epoch, tmp))
    _replace_cache(debs, seeded)


# merged-/usr the way debootstrap makes it: /bin, /sbin, /lib, /lib64 symlinks into /usr
# before anything is unpacked. Where the suite has a real usr-is-merged package
# (bookworm, trixie), mmdebstrap's merged-usr hooks also install it, so apt never picks
# usrmerge (which pulls perl) for init-system-helpers' "usrmerge | usr-is-merged".
# mmdebstrap's own maybe-merged-usr hook cannot be used as it is: it takes noble's
# usr-is-merged, which base-files only Provides, for a package and then fails.
_HOOKS = "/usr/share/mmdebstrap/hooks"
MERGED_USR_SETUP = (
    'if env --chdir="$1" APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-cache show '
    '--no-all-versions usr-is-merged 2>/dev/null | grep -q "^Package: usr-is-merged$"; '
    f'then {_HOOKS}/merged-usr/setup00.sh "$1"; '
    'else for d in bin sbin lib lib64; do ln -s "usr/$d" "$1/$d"; mkdir -p "$1/usr/$d"; done; '
    'fi')
# replaces mmdebstrap's dummy usr-is-merged, if the setup hook installed it, by the real one
MERGED_USR_ESSENTIAL = (
    'if [ "$(dpkg-query --root="$1" -f \'${db:Status-Status} ${Source}\' --show usr-is-merged '
    '2>/dev/null)" = "installed mmdebstrap-dummy-usr-is-merged" ]; '
    f'then {_HOOKS}/merged-usr/essential00.sh "$1"; fi')


# params: the bootstrap's inputs and scratch paths, each distinct
def run_debootstrap(spec: BootstrapSpec, rootfs: Path, key: Path, epoch: int, debs: Path,
                    logf: IO[str], arch: Architecture | None = None) -> None:
    cmd = ["debootstrap", f"--variant={DEBOOTSTRAP_VARIANT}", "--force-check-gpg",
           *([f"--arch={arch.name}"] if arch else []),
           f"--keyring={key}", f"--components={','.join(spec.components)}",
           f"--cache-dir={debs.resolve()}",
           spec.suite, str(rootfs), spec.mirror] + ([spec.script] if spec.script else [])
    _host_run(cmd, logf, "debootstrap failed (see the log); check the mirror and the key",
              env=_tool_env(epoch, rootfs.parent))


def seed_debs(root: Path, cache: Path) -> int:
    """Setup hook: put every cached .deb whose sha256 the suite's (signature-checked)
    Packages index names into the chroot's apt archive directory. Runs `apt-get update`
    with mmdebstrap's apt configuration first, so the index is the current one."""
    env = dict(os.environ, APT_CONFIG=os.environ["MMDEBSTRAP_APT_CONFIG"])
    subprocess.run(["apt-get", "update", "--error-on=any"], cwd=root, env=env, check=True,
                   stdout=sys.stderr)
    files = subprocess.run(["apt-get", "indextargets", "--format", "$(FILENAME)",
                            "Created-By: Packages"], cwd=root, env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    wanted: dict[str, set[str]] = {}
    for name in files:
        text = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", name], check=True,
                              capture_output=True, text=True).stdout
        for stanza in text.split("\n\n"):
            fields = dict(line.split(": ", 1) for line in stanza.splitlines()
                          if ": " in line and not line.startswith(" "))
            if {"Package", "Version", "Architecture", "SHA256"} <= fields.keys():
                # apt's name for a downloaded .deb (the epoch's colon escaped)
                name = "{}_{}_{}.deb".format(fields["Package"],
                                             fields["Version"].replace(":", "%3a"),
                                             fields["Architecture"])
                wanted.setdefault(name, set()).add(fields["SHA256"])
    archives = root / "var/cache/apt/archives"
    archives.mkdir(parents=True, exist_ok=True)
    seeded = 0
    for deb in sorted(cache.glob("*.deb")):
        try:
            if deb.name in wanted and sha256_file(deb) in wanted[deb.name]:
                shutil.copy2(deb, archives / deb.name)
                seeded += 1
        except FileNotFoundError:     # another run of the same suite replaced the cache
            continue
    print(f"I: seeded {seeded} verified .debs from {cache}", file=sys.stderr)
    return seeded


def _replace_cache(cache: Path, fresh: Path) -> None:
    """The cache becomes what this run used (old versions do not pile up)."""
    new = {p.name for p in fresh.glob("*.deb")}
    if not new:
        return
    for old in cache.glob("*.deb"):
        if old.name not in new:
            old.unlink()
    for deb in fresh.glob("*.deb"):
        os.replace(deb, cache / deb.name)


def _host_run(cmd: list[str], logf: IO[str], problem: str, env=None) -> None:
    logf.write("$ " + " ".join(cmd) + "\n")
    logf.flush()
    tail: list[str] = []
    # umask: files maintainer scripts create get their mode from it, on every host alike
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", env=env, umask=0o022) as proc:
        for line in proc.stdout:
            logf.write(line)
            tail = (tail + [line.rstrip()])[-5:]
    if proc.returncode != 0:
        raise ImageError(f"`{cmd[0]}` exited with {proc.returncode}: {problem}\n"
                         + "\n".join(tail), "")


# ------------------------------------------------------------------ the rootfs

def tidy_rootfs(rootfs: Path, epoch: int, logf: IO[str]) -> None:
    """Remove caches, logs and what came from the host or the moment of the run."""
    for pattern in TIDY_GLOBS:
        for path in sorted(rootfs.glob(pattern)):
            if path.is_dir() and not path.is_symlink():
                _remove_tree(path)
            else:
                path.unlink()
    machine_id = rootfs / "etc/machine-id"
    if machine_id.exists():
        machine_id.write_text("")
    _clamp_shadow(rootfs / "etc/shadow", epoch, logf)
    _clamp_shadow(rootfs / "etc/shadow-", epoch, logf)


def _clamp_shadow(path: Path, epoch: int, logf: IO[str]) -> None:
    """Field 3 of shadow (day of the last password change) is the day of the run unless
    the distro's shadow honours SOURCE_DATE_EPOCH; set it to the epoch's day."""
    if not path.is_file() or path.is_symlink():
        return
    day = str(epoch // 86400)
    lines = path.read_text().splitlines(keepends=True)
    out = []
    for line in lines:
        fields = line.split(":")
        if len(fields) > 2 and fields[2] not in ("", day):
            fields[2] = day
        out.append(":".join(fields))
    if out != lines:
        mode = path.stat().st_mode
        path.write_text("".join(out))
        os.chmod(path, stat.S_IMODE(mode))
        logf.write(f"{path.name}: last-change days set to {day}\n")


def ensure_apt_source(rootfs: Path, spec: BootstrapSpec, logf: IO[str]) -> None:
    """/etc/apt/sources.list names the mirror with the suite's components."""
    path = rootfs / "etc/apt/sources.list"
    want = source_line(spec) + "\n"
    if not path.exists() or path.read_text() != want:
        logf.write(f"/etc/apt/sources.list: {want}")
        path.write_text(want)


def apt_trusted_files(rootfs: Path) -> list[Path]:
    files = [rootfs / "etc/apt/trusted.gpg"]
    parts = rootfs / "etc/apt/trusted.gpg.d"
    files += sorted(parts.glob("*.gpg")) + sorted(parts.glob("*.asc"))
    return [f for f in files if f.is_file() and f.stat().st_size > 0]


def ensure_apt_trusts(rootfs: Path, spec: BootstrapSpec, key: Path, logf: IO[str]) -> str:
    """The image's own apt must trust the pinned key (its keyring package normally
    provides it); otherwise the pinned key alone is installed into trusted.gpg.d.
    Returns the file that holds it, relative to the rootfs."""
    for path in apt_trusted_files(rootfs):
        if spec.key_fingerprint in key_fingerprints(path):
            rel = str(path.relative_to(rootfs))
            logf.write(f"apt in the image trusts {spec.key_fingerprint} via /{rel}\n")
            return rel
    dest = rootfs / "etc/apt/trusted.gpg.d" / PINNED_KEY_NAME
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(key, dest)
    os.chmod(dest, 0o644)
    logf.write(f"no keyring in the image holds {spec.key_fingerprint}: installed the pinned "
               f"key as /{dest.relative_to(rootfs)}\n")
    return str(dest.relative_to(rootfs))


def installed_packages(rootfs: Path, native: str | None = None) -> dict[str, str]:
    """name -> version of every package dpkg has installed in the rootfs. Multi-arch
    packages of another architecture than the rootfs's `native` one (default: the
    host's) are named name:arch."""
    proc = subprocess.run(
        ["dpkg-query", f"--admindir={rootfs / 'var/lib/dpkg'}", "-W", "-f",
         "${db:Status-Abbrev}\t${Package}\t${Architecture}\t${Version}\n"],
        capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageError(f"dpkg-query in {rootfs} failed: {proc.stderr.strip()}", "")
    native = native or subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                                      text=True).stdout.strip()
    out = {}
    for line in proc.stdout.splitlines():
        status, name, arch, version = line.split("\t")
        if status.strip() != "ii":
            continue
        out[name if arch in (native, "all") else f"{name}:{arch}"] = version
    return dict(sorted(out.items()))


def _remove_tree(path: Path) -> None:
    """rm -rf that never crosses into a mount (a tool that died may leave /proc mounted
    in its chroot); a failure leaves files behind rather than hiding the first error."""
    if path.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


# ------------------------------------------------------------------ the tar and the image

def pack_rootfs(rootfs: Path, dest: Path, epoch: int,
                dropped: list[str] | None = None) -> str:
    """Write rootfs as a tar whose bytes depend only on names, contents, modes, owners
    and (clamped) mtimes; return its sha256. Members are "./", "./bin"…, in bytewise name
    order, depth first (like GNU tar --sort=name). Sockets are skipped; xattrs are not
    kept (like `tar` without --xattrs): the files that had some are appended to
    `dropped` ("path: name,name")."""
    seen: dict[tuple[int, int], str] = {}
    with open(dest, "wb") as raw, tarfile.open(fileobj=raw, mode="w",
                                               format=tarfile.GNU_FORMAT) as tar:
        def add(path: str, arcname: str) -> None:
            st = os.lstat(path)
            if dropped is not None:
                names = os.listxattr(path, follow_symlinks=False)
                if names:
                    dropped.append(f"{arcname}: {','.join(sorted(names))}")
            info = tarfile.TarInfo(arcname)
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid, info.gid = st.st_uid, st.st_gid
            info.uname = info.gname = ""
            info.mtime = min(int(st.st_mtime), epoch)
            fmt = stat.S_IFMT(st.st_mode)
            if fmt == stat.S_IFREG:
                if st.st_nlink > 1 and (st.st_dev, st.st_ino) in seen:
                    info.type, info.linkname = tarfile.LNKTYPE, seen[(st.st_dev, st.st_ino)]
                    tar.addfile(info)
                    return
                if st.st_nlink > 1:
                    seen[(st.st_dev, st.st_ino)] = arcname
                info.size = st.st_size
                with open(path, "rb") as f:
                    tar.addfile(info, f)
                return
            if fmt == stat.S_IFDIR:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                for name in sorted(os.listdir(os.fsencode(path))):
                    name = os.fsdecode(name)
                    add(os.path.join(path, name),
                        (arcname.rstrip("/") + "/" + name) if arcname != "." else "./" + name)
                return
            if fmt == stat.S_IFLNK:
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
            elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
                info.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif fmt == stat.S_IFIFO:
                info.type = tarfile.FIFOTYPE
            else:
                return    # sockets: not archivable
            tar.addfile(info)

        add(str(rootfs), ".")
    return sha256_file(dest)


def _canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def created_time(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def image_config(rootfs_sha256: str, epoch: int, created_by: str,
                 arch: Architecture | None = None) -> bytes:
    """The image config (the bytes the engine hashes into the image id). `arch` None:
    amd64, with no variant (the bytes every amd64 base was made with)."""
    created = created_time(epoch)
    platform = {"architecture": arch.name, **({"variant": arch.variant} if arch.variant
                                              else {})} if arch else {"architecture": "amd64"}
    return _canonical_json({
        **platform,
        "os": "linux",
        "created": created,
        "config": {"Env": list(IMAGE_ENV), "Cmd": list(IMAGE_CMD)},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{rootfs_sha256}"]},
        "history": [{"created": created, "created_by": created_by}],
    })


def manifest(config: bytes, rootfs_sha256: str, tag: str) -> bytes:
    return _canonical_json([{
        "Config": f"{hashlib.sha256(config).hexdigest()}.json",
        "RepoTags": [tag],
        "Layers": [f"{rootfs_sha256}/layer.tar"],
    }])


def write_docker_archive(layer: Path, config: bytes, tag: str, epoch: int, dest: Path) -> None:
    """A `docker save`-format archive: config, one uncompressed layer, manifest.json."""
    rootfs_sha256 = sha256_file(layer)
    with tarfile.open(dest, "w", format=tarfile.GNU_FORMAT) as tar:
        def member(name: str, size: int, mode: int = 0o644,
                   kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.type = size, mode, epoch, kind
            info.uname = info.gname = ""
            return info
        tar.addfile(member(f"{rootfs_sha256}", 0, 0o755, tarfile.DIRTYPE))
        with open(layer, "rb") as f:
            tar.addfile(member(f"{rootfs_sha256}/layer.tar", layer.stat().st_size), f)
        conf_name = f"{hashlib.sha256(config).hexdigest()}.json"
        tar.addfile(member(conf_name, len(config)), io.BytesIO(config))
        mf = manifest(config, rootfs_sha256, tag)
        tar.addfile(member("manifest.json", len(mf)), io.BytesIO(mf))


def load_image(client, archive: Path, tag: str, expected_id: str) -> str:
    """`docker load` the archive; the engine must report the expected id under `tag`."""
    with open(archive, "rb") as f:
        try:
            loaded = client.images.load(f)
        except Exception as exc:   # docker.errors.APIError, connection errors
            raise ImageError(f"docker load of {archive.name} failed: {exc}", "")
    ids = sorted({image.id for image in loaded})
    tagged = client.images.get(tag).id
    if tagged != expected_id:
        raise ImageError(f"{tag} is {tagged} after loading, expected {expected_id} "
                         f"(load reported {ids})",
                         "an engine with the containerd image store ids images by manifest; "
                         "use the classic store")
    return tagged


def _main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "seed-debs":
        try:
            seed_debs(Path(argv[1]), Path(argv[2]))
        except subprocess.CalledProcessError as exc:
            # apt said why just above (e.g. NO_PUBKEY: the pinned key did not sign it)
            print(f"E: mxbuild seed-debs: `{' '.join(exc.cmd)}` exited with {exc.returncode}",
                  file=sys.stderr)
            return 1
        return 0
    print("usage: python -m mxbuild.bootstrap seed-debs CHROOT CACHE_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
