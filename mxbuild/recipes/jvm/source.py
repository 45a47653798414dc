"""The JVM half of a cell built from an Apache MXNet source release — for the versions
upstream never published for the JVM (1.6–1.9.x) and wherever Maven Central does not serve
org.apache.mxnet:

- `libmxnet-scala.so`, the JNI library: scala-package/native's one translation unit,
  compiled against the tree's include/ and 3rdparty headers and JDK 8's JNI headers, linked
  dynamically against the cell's libmxnet.so, in the cell's own distro (the JNI image: its
  build image + g++), so it needs only the libstdc++ that distro has. No SONAME (a JNI
  library is loaded by file name), no RPATH (libmxnet.so lies in /usr/lib/<multiarch>).
  Cached in the stage cache ("jni") by the source, image, script and libmxnet digests.
- the thin jar: scala-package's core + infer classes, built by Maven with JDK 8 in the
  matrix's `jvm_build` distro (Scala 2.11's compiler runs on JDK 8 only), as upstream's
  assembly makes its full jar but without lib/native/, with a POM naming the runtime
  dependencies of upstream's published POM (scala-package/externalPom). Its operator API is
  generated at build time from the operators of the libmxnet.so it loads, so it is built
  once per MXNet version against the version's cpu library (the official cpu wheel's, as
  the Python thin client) and cached in the stage cache ("jvm-thin") by the source and
  library digests.

The user's tree is never written: the parts the JVM build reads (TREE_PARTS) are copied,
symlinks resolved, `target/` directories left out, and built inside containers. The
Maven invocation (recipes/jvm/build-scala.sh) needs no edit of upstream's POMs.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Iterator

from docker.types import Mount

from ... import images, jvm_client, source_tree, truststore
from ...cache import key_of, tree_digest
from ...containers import CommandFailed, Container
from ...errors import ConfigError, MxbuildError
from ...fetch import cached_wheel, sha256_file
from ...images import ImageRef
from ...matrix import Cell
from ...paths import module_digest
from ...payload import BUILD_HOME, BUILD_UID, PRIVATE_DIR
from ..compile import abi_requirements, machine_gate
from .build import jvm_build

# What the JVM build reads of a source tree (paths relative to its top).
TREE_PARTS = ("scala-package", "include", "3rdparty/dmlc-core/include",
              "3rdparty/mshadow/mshadow", "3rdparty/dlpack/include",
              "3rdparty/tvm/nnvm/include", "src/common", "LICENSE", "NOTICE")
JNI_SOURCE = "scala-package/native/src/main/native/org_apache_mxnet_native_c_api.cc"
DEPLOY_POM = "scala-package/externalPom/src/main/deploy/deploy.xml"   # the published POM
VERSION_HEADER = source_tree.VERSION_H
REQUIRED = ("scala-package/pom.xml", JNI_SOURCE, DEPLOY_POM, VERSION_HEADER, "LICENSE",
            "NOTICE")
SKIP_DIRS = frozenset({"target", ".git"})      # build output of an earlier build, VCS
JNI_NAME = "libmxnet-scala.so"
JVM_BUILD_REPO = "mxbuild/jvm-build"
JNI_REPO = "mxbuild/jni"
THIN_STAGE, JNI_STAGE = "jvm-thin", "jni"     # their entries in the stage cache
M2_MOUNT = "/m2"
JNI_INCLUDE = "jni-include"


@dataclass(frozen=True)
class JvmSource:
    """The staged copy of a source tree's TREE_PARTS."""
    dir: Path
    digest: str           # sha256 over the names and contents of the staged TREE_PARTS
    version: str          # MXNET_MAJOR.MINOR.PATCH of include/mxnet/base.h
    description: str      # where it came from, for POMs and copyright files
    epoch: int            # SOURCE_DATE_EPOCH of the source (jar entry times)


@dataclass(frozen=True)
class Built:
    """An output of this module: its files, whether the stage cache had them, and what it
    reports (report.json `jvm`)."""
    files: dict[str, Path]
    reused: bool
    report: dict


# ---------------------------------------------------------------- the source tree

def _tree_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, path) of every regular file of TREE_PARTS under root, symlinks
    followed (include/ links into 3rdparty/), dangling links and SKIP_DIRS left out,
    sorted."""
    found: list[tuple[str, Path]] = []
    for part in TREE_PARTS:
        top = root / part
        if top.is_file():
            found.append((part, top))
            continue
        seen: set[str] = set()
        for base, dirs, files in os.walk(top, followlinks=True):
            real = os.path.realpath(base)
            if real in seen:          # a symlink loop
                dirs[:] = []
                continue
            seen.add(real)
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            for name in files:
                path = Path(base, name)
                if path.is_file():
                    found.append((path.relative_to(root).as_posix(), path))
    return iter(sorted(found))


def _extract(tarball: Path, dest: Path) -> Path:
    """The TREE_PARTS of a release tarball (one top directory), unpacked under dest."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        members = []
        for member in tar.getmembers():
            rel = PurePosixPath(*PurePosixPath(member.name).parts[1:]).as_posix()
            if any(rel == p or rel.startswith(p + "/") for p in TREE_PARTS):
                member.name = rel
                members.append(member)
        tar.extractall(dest, members=members, filter="data")
    return dest


def stage(path: Path, is_dir: bool, description: str, epoch: int, dest: Path,
          logf: IO[str]) -> JvmSource:
    """Copy what the JVM build reads of a source tree (or release tarball) to dest."""
    tree = path if is_dir else _extract(path, dest.with_name(dest.name + "-unpacked"))
    missing = [rel for rel in REQUIRED if not (tree / rel).is_file()]
    if missing:
        raise ConfigError(f"{path} has no {', '.join(missing)}",
                          "give an Apache MXNet source release (1.6 or later) with its "
                          "scala-package and 3rdparty submodules")
    version = source_tree.version_of((tree / VERSION_HEADER).read_text(errors="replace"))
    if version is None:
        raise ConfigError(f"{path}/{VERSION_HEADER} defines no MXNET_MAJOR/MINOR/PATCH",
                          "give an Apache MXNet source tree")
    if dest.exists():
        shutil.rmtree(dest)
    h, count = hashlib.sha256(), 0
    for rel, src in _tree_files(tree):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        h.update(rel.encode() + b"\0" + hashlib.sha256(target.read_bytes()).digest())
        count += 1
    if not is_dir:
        shutil.rmtree(tree)
    digest = h.hexdigest()
    logf.write(f"jvm source: {count} files of {path} ({', '.join(TREE_PARTS)}) staged, "
               f"MXNet {version}, digest {digest[:16]}\n")
    return JvmSource(dest, digest, version, description, epoch)


def deploy_dependencies(source: JvmSource) -> tuple[jvm_client.Dependency, ...]:
    """The runtime dependencies upstream's published POM names (externalPom's deploy.xml,
    SCALA_VERSION from scala-package/pom.xml), without the build-only ones."""
    parent = (source.dir / "scala-package/pom.xml").read_text()
    scala = re.search(r"<scala\.version>([^<]+)</scala\.version>", parent)
    if scala is None:
        raise MxbuildError("scala-package/pom.xml sets no scala.version",
                           "give an MXNet source tree with its scala-package")
    text = (source.dir / DEPLOY_POM).read_text().replace("SCALA_VERSION", scala.group(1))
    return jvm_client.runtime_dependencies(text.encode(), DEPLOY_POM)


# ---------------------------------------------------------------- images

def jvm_build_image(ctx, cell: Cell, logf: IO[str]) -> ImageRef:
    spec = jvm_build(cell)
    if spec is None:
        raise ConfigError("matrix.yaml has no jvm_build",
                          "add jvm_build: {distro: <a distro that ships JDK 8>, "
                          "jdk: openjdk-8-jdk-headless}")
    with ctx.locks(f"images-{spec.distro.name}"):
        base = images.ensure_base(ctx, spec.distro, logf)
        text = ctx.data.render("docker/jvm-build.Dockerfile.j2", base=base,
                               distro=spec.distro, jdk=spec.jdk)
        return images.build_from_template(ctx, JVM_BUILD_REPO, spec.distro.name,
                                          text, logf)


def jni_image(ctx, cell: Cell, build: ImageRef, logf: IO[str]) -> ImageRef:
    """The build image plus g++; for an architecture the build machines cross-compile for
    (arm64), their own (amd64) build image plus that architecture's cross toolchain."""
    cross = cell.arch.cross
    with ctx.locks(f"images-{cell.distro.name}"):
        text = ctx.data.render("docker/jni.Dockerfile.j2", build=build, distro=cell.distro,
                               cross_arch=cell.arch.name if cross else None,
                               packages=list(cross.packages) if cross else ["g++"])
        return images.build_from_template(ctx, JNI_REPO, cell.distro.name + cell.arch.suffix,
                                          text, logf)


def cross_tools(cell: Cell) -> dict[str, str]:
    """build-jni.sh's environment: the architecture, and for a cross compile the
    toolchain's g++ and binutils (aarch64-linux-gnu-g++ …)."""
    tools = {"ARCH": cell.arch.name}
    if cell.arch.cross:
        prefix = f"{cell.arch.triplet}-"
        tools |= {"CXX": f"{prefix}g++", "STRIP": f"{prefix}strip", "NM": f"{prefix}nm"}
    return tools


def jni_headers(ctx, jvm_image: ImageRef, logf: IO[str]) -> Path:
    """JDK 8's include/ (jni.h, linux/jni_md.h) from the JVM build image: the JNI library
    is compiled against the oldest JNI the thin jar runs on."""
    where = ctx.opts.cache_dir / "jvm" / f"jni-include-{jvm_image.id.split(':')[-1][:16]}"
    with ctx.locks("jni-headers"):
        if (where / "jni.h").is_file():
            return where
        spool = where.parent / f".{where.name}.tmp"
        shutil.rmtree(spool, ignore_errors=True)
        with Container(ctx.docker, jvm_image.ref, label="jni-headers", log_file=logf) as box:
            box.run(["sh", "-c", f'cp -rL "$JAVA_HOME/include" /tmp/{JNI_INCLUDE}'])
            copied = box.copy_out(f"/tmp/{JNI_INCLUDE}", spool)
        shutil.rmtree(where, ignore_errors=True)
        copied.rename(where)
        shutil.rmtree(spool, ignore_errors=True)
    return where


# ---------------------------------------------------------------- the thin jar

def _cpu_library(ctx, cell: Cell, dest: Path) -> tuple[Path, str]:
    """The version's cpu libmxnet.so and what it bundles, as the official wheel has them
    (its RPATH ${ORIGIN} finds them next to it): (directory, wheel file name)."""
    pin = cell.client_wheel or cell.official_wheel
    wheel = cached_wheel(pin, ctx.opts.cache_dir / "downloads", ctx.opts.extra_ca_bundle)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as zf:
        for name in ("libmxnet.so", *pin.bundled):
            with zf.open(f"mxnet/{name}") as src, open(dest / name, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    return dest, pin.filename


def thin_inputs(ctx, cell: Cell, source_digest: str) -> dict:
    """What the thin jar depends on (its stage-cache key)."""
    pin = cell.client_wheel or cell.official_wheel
    spec = jvm_build(cell)
    return {"code": module_digest(jvm_client, truststore, sys.modules[__name__]), "source": source_digest,
            "libmxnet": pin.sha256, "bundled": list(pin.bundled), "mxnet": cell.mxnet,
            "jvm_build": [spec.distro.name, spec.jdk] if spec else None,
            "scripts": ctx.data.digest("recipes/jvm/build-scala.sh",
                                       "docker/jvm-build.Dockerfile.j2")}


def thin_jar(ctx, cell: Cell, source: JvmSource, logf: IO[str]) -> Built:
    """The thin jar + POM of the cell's MXNet version (built once, then from the stage
    cache): files {jar name: path, pom name: path}."""
    key = key_of(THIN_STAGE, thin_inputs(ctx, cell, source.digest))
    names = (jvm_client.jar_name(cell.mxnet), jvm_client.pom_name(cell.mxnet))
    with ctx.locks(f"{THIN_STAGE}-{cell.mxnet}"):     # --jobs: one cell builds it
        hit = ctx.cache.get(THIN_STAGE, key)
        if hit is None:
            files, manifest = _build_thin_jar(ctx, cell, source, logf)
            entry = ctx.cache.put(THIN_STAGE, key, files, manifest)
            reused = False
        else:
            entry, manifest = hit
            reused = True
            logf.write(f"thin jar: reused {entry} (same source and libmxnet)\n")
    return Built({n: entry / n for n in names}, reused, {**manifest, "reused": reused})


def _build_thin_jar(ctx, cell: Cell, source: JvmSource,
                    logf: IO[str]) -> tuple[dict[str, Path], dict]:
    opts = ctx.opts
    if source.version != cell.mxnet:
        raise ConfigError(f"the source tree is MXNet {source.version}, the cell "
                          f"{cell.id} is {cell.mxnet}", "give the source of the cell's version")
    work = opts.work_dir / "jvm" / cell.mxnet
    image = jvm_build_image(ctx, cell, logf)
    libdir, wheel = _cpu_library(ctx, cell, work / "lib")
    own = dict(uid=BUILD_UID, gid=BUILD_UID)
    out = work / "out"
    if out.exists():
        shutil.rmtree(out)
    started = time.monotonic()
    mounts = [Mount(M2_MOUNT, opts.m2_volume, type="volume")]
    with Container(ctx.docker, image.ref, label=f"jvm-thin-{cell.mxnet}", network="bridge",
                   extra_ca=opts.extra_ca_bundle, mounts=mounts, log_file=logf) as box:
        # the volume is ours: whatever wrote it before, the build user owns it now
        box.run(["chown", "-R", f"{BUILD_UID}:{BUILD_UID}", M2_MOUNT])
        box.copy_into(source.dir, BUILD_HOME, arcname="src", **own)
        box.copy_into(libdir, f"{BUILD_HOME}/src", arcname="lib", **own)
        box.copy_into(ctx.data.recipe("jvm"), BUILD_HOME, arcname="recipe", **own)
        # Maven Central over https: the image's CAs and the extra bundle (a TLS proxy's)
        # (copied out, not printed: the stage log would hold the whole bundle)
        system = box.copy_out("/etc/ssl/certs/ca-certificates.crt", work / "ca").read_text()
        extra = opts.extra_ca_bundle.read_text() if opts.extra_ca_bundle else ""
        box.write_file(f"{BUILD_HOME}/truststore.jks",
                       truststore.jks(truststore.pem_certificates(system, extra)))
        try:
            box.run(["sh", "recipe/build-scala.sh", f"{BUILD_HOME}/src", f"{BUILD_HOME}/out"],
                    user="builder", workdir=BUILD_HOME,
                    env={"MAVEN_REPO": M2_MOUNT, "TRUSTSTORE": f"{BUILD_HOME}/truststore.jks",
                         "TRUSTSTORE_PASSWORD": truststore.PASSWORD})
        except CommandFailed as exc:
            raise MxbuildError(f"building scala-package failed: {exc}\n{exc.tail[-2000:]}",
                               "see the recipe log (Maven's output); Maven Central must be "
                               "reachable from the container")
        box.copy_out(f"{BUILD_HOME}/out", work)
    seconds = round(time.monotonic() - started, 1)
    jar = out / jvm_client.jar_name(cell.mxnet)
    entries = jvm_client.assemble_thin_jar(
        [out / "core.jar", out / "infer.jar"], jar, cell.mxnet, source.epoch,
        (source.dir / "LICENSE").read_bytes(), (source.dir / "NOTICE").read_bytes(),
        "Apache MXNet Scala/Java API (thin: no native code)")
    if jvm_client.native_members(jar):
        raise MxbuildError(f"{jar.name} holds native code", "check the source tree")
    pom = out / jvm_client.pom_name(cell.mxnet)
    pom.write_bytes(jvm_client.render_pom(cell.mxnet, deploy_dependencies(source), (
        f"scala-package core + infer of {source.description}, built by mxbuild with JDK 8 "
        f"against the cpu libmxnet.so of {wheel}, without native code: the natives come "
        "from the libmxnet and libmxnet-scala packages")))
    logf.write(f"thin jar {jar.name}: {entries} entries, {jar.stat().st_size} bytes, "
               f"scala-package built in {seconds} s\n")
    return ({jar.name: jar, pom.name: pom},
            {"seconds": seconds, "entries": entries, "size": jar.stat().st_size,
             "sha256": sha256_file(jar), "libmxnet": wheel, "source": source.description})


# ---------------------------------------------------------------- the JNI library

def jni_inputs(ctx, cell: Cell, source_digest: str, image: ImageRef, libmxnet: Path,
               headers: Path) -> dict:
    return {"code": module_digest(sys.modules[__name__]), "source": source_digest,
            "image": image.id, "libmxnet": sha256_file(libmxnet),
            "headers": tree_digest(headers),
            "script": ctx.data.digest("recipes/jvm/build-jni.sh"), "distro": cell.distro.name,
            "arch": cell.arch.name}


def jni_library(ctx, cell: Cell, source: JvmSource, libmxnet_dir: Path, build: ImageRef,
                logf: IO[str]) -> Built:
    """libmxnet-scala.so for the cell's distro and architecture, linked against
    libmxnet_dir/libmxnet.so (files {JNI_NAME: path}); report: the GLIBCXX version it
    needs, seconds. `build`: the build machines' build image of the distro (amd64, for an
    arm64 cell too: its natives are cross-compiled)."""
    image = jni_image(ctx, cell, build, logf)
    headers = jni_headers(ctx, jvm_build_image(ctx, cell, logf), logf)
    libmxnet = libmxnet_dir / "libmxnet.so"
    key = key_of(JNI_STAGE, jni_inputs(ctx, cell, source.digest, image, libmxnet, headers))
    hit = ctx.cache.get(JNI_STAGE, key)
    if hit is not None:
        entry, manifest = hit
        logf.write(f"{JNI_NAME}: reused {entry}\n")
        return Built({JNI_NAME: entry / JNI_NAME}, True, {**manifest, "reused": True})
    work = ctx.opts.work_dir / cell.id / "jni"
    if work.exists():
        shutil.rmtree(work)
    lib = work / "lib"
    lib.mkdir(parents=True)
    shutil.copyfile(libmxnet, lib / "libmxnet.so")
    if (libmxnet_dir / PRIVATE_DIR).is_dir():      # what its RPATH ($ORIGIN/m) names
        shutil.copytree(libmxnet_dir / PRIVATE_DIR, lib / PRIVATE_DIR)
    own = dict(uid=BUILD_UID, gid=BUILD_UID)
    started = time.monotonic()
    with Container(ctx.docker, image.ref, label=f"jni-{cell.id}", log_file=logf) as box:
        box.copy_into(source.dir, BUILD_HOME, arcname="src", **own)
        box.copy_into(headers, BUILD_HOME, arcname=JNI_INCLUDE, **own)
        box.copy_into(lib, BUILD_HOME, arcname="lib", **own)
        box.copy_into(ctx.data.recipe("jvm") / "build-jni.sh", BUILD_HOME, **own)
        try:
            box.run(["sh", "build-jni.sh", "src", JNI_INCLUDE, "lib", "out"], user="builder",
                    workdir=BUILD_HOME, env=cross_tools(cell))
        except CommandFailed as exc:
            raise MxbuildError(f"compiling {JNI_NAME} failed: {exc}\n{exc.tail[-2000:]}",
                               f"see the recipe log; the source is {JNI_SOURCE}")
        box.copy_out(f"{BUILD_HOME}/out", work)
    seconds = round(time.monotonic() - started, 1)
    built = work / "out" / JNI_NAME
    machine_gate((work / "out" / "elf-header.txt").read_text(), cell.arch, JNI_NAME,
                 f"build-jni.sh did not use the {cell.arch.name} toolchain "
                 f"({cross_tools(cell).get('CXX', 'g++')}): check recipes/jvm/build-jni.sh")
    needs = glibcxx_needed((work / "out" / "dyn-syms.txt").read_text())
    logf.write(f"{JNI_NAME}: {built.stat().st_size} bytes, needs GLIBCXX_{needs}, built in "
               f"{seconds} s on {cell.distro.name} for {cell.arch.name}\n")
    manifest = {"seconds": seconds, "size": built.stat().st_size, "glibcxx": needs,
                "distro": cell.distro.name, "arch": cell.arch.name,
                "sha256": sha256_file(built)}
    entry = ctx.cache.put(JNI_STAGE, key, {JNI_NAME: built}, manifest)
    return Built({JNI_NAME: entry / JNI_NAME}, False, {**manifest, "reused": False})


def glibcxx_needed(dyn_syms: str) -> str | None:
    """The newest GLIBCXX_ version the undefined symbols of `readelf --dyn-syms` need."""
    return abi_requirements(dyn_syms).get("GLIBCXX", (None,))[0]


