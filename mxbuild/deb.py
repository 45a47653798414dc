"""Stage the package trees of a cell (one per package it ships), let the cell's distro
write each control member (dpkg-shlibdeps, dpkg-gencontrol), assemble each .deb
(debpack.py) and check it with that distro's dpkg-deb and lintian.

What goes into which package comes from matrix.yaml (`packages.<name>.files`); what a
recipe's binaries bundle, and which lintian findings hold for them, from the payload."""
from __future__ import annotations

import datetime as dt
import gzip
import importlib.metadata
import io
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import yaml

from . import debpack
from .cache import link_or_copy
from .containers import CommandFailed, Container
from .errors import MxbuildError
from .fetch import sha256_file
from .matrix import Cell, PackageSpec
from .payload import BUILD_HOME, BUILD_UID, PRIVATE_DIR, PRIVATE_LINK, Payload, patchelf_binary


@dataclass(frozen=True)
class BuiltDeb:
    package: str
    path: Path
    size: int
    sha256: str
    lintian_errors: int
    lintian_warnings: int

    @property
    def lintian_path(self) -> Path:
        return lintian_path(self.path.parent, self.package)

    def as_report(self) -> dict:
        return {"package": self.package, "path": str(self.path), "size": self.size,
                "sha256": self.sha256, "lintian": {"errors": self.lintian_errors,
                                                   "warnings": self.lintian_warnings}}

    def manifest(self) -> dict:
        """The stage cache's record (file names, not paths)."""
        return {"package": self.package, "deb": self.path.name, "size": self.size,
                "sha256": self.sha256, "lintian_errors": self.lintian_errors,
                "lintian_warnings": self.lintian_warnings}

    @classmethod
    def from_manifest(cls, directory: Path, m: dict) -> "BuiltDeb":
        return cls(m["package"], directory / m["deb"], m["size"], m["sha256"],
                   m["lintian_errors"], m["lintian_warnings"])


def lintian_path(directory: Path, package: str) -> Path:
    return directory / f"{package}.lintian.txt"


def rfc2822(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")


# What in the build image decides the bytes of the .deb: recorded in buildinfo.json by
# version (an image id would differ between two bootstraps of the same inputs).
BUILD_TOOLS = ("dpkg", "dpkg-dev", "binutils", "xz-utils", "libc6")


def build_tools(box, cell: Cell | None = None) -> dict[str, str]:
    # a package of a cross-compiled architecture: its objdump (dpkg-shlibdeps) is the
    # cross binutils' (binutils-aarch64-linux-gnu)
    cross = ([f"binutils-{cell.arch.triplet.replace('_', '-')}"]
             if cell is not None and cell.arch.cross else [])
    out = box.run(["dpkg-query", "-W", "-f", "${Package}=${Version}\n", *BUILD_TOOLS,
                   *cross]).output
    return dict(line.split("=", 1) for line in out.split() if "=" in line)


def split_payload(cell: Cell, payload: Payload) -> dict[str, list[str]]:
    """Which payload files each package of the cell holds (package -> sorted paths).
    Every file in exactly one package, every package with a file: anything else is a
    mismatch between the recipe and matrix.yaml, named with the fix."""
    out: dict[str, list[str]] = {p.name: [] for p in cell.packages}
    for rel in sorted(payload.files):
        holders = [p.name for p in cell.packages if p.holds(rel)]
        if len(holders) != 1:
            problem = ("no package the cell ships holds it" if not holders else
                       f"{' and '.join(holders)} both hold it")
            raise MxbuildError(f"payload file {rel}: {problem} (ships: "
                               f"{', '.join(cell.package_names)})",
                               "give each file to one package: packages.<name>.files in "
                               "matrix.yaml, or the build's `packages` list")
        out[holders[0]].append(rel)
    empty = [name for name, rels in out.items() if not rels]
    if empty:
        raise MxbuildError(f"recipe {cell.recipe} produced nothing for {', '.join(empty)} "
                           f"(payload: {', '.join(sorted(payload.files))})",
                           "drop the package from the build's `packages` in matrix.yaml, or "
                           "fix its files globs")
    return out


def _bundled_here(payload: Payload, rels: list[str]) -> list[str]:
    private = {PurePosixPath(rel).name for rel in rels
               if PurePosixPath(rel).parent == PurePosixPath(PRIVATE_DIR)}
    return [soname for soname in payload.bundled if soname in private]


def _upstream_here(payload: Payload, rels: list[str]) -> dict[str, str]:
    names = {PurePosixPath(rel).name for rel in rels}
    return {name: sha for name, sha in payload.upstream_sha256.items() if name in names}


def stage_tree(ctx, cell: Cell, payload: Payload, tools: dict[str, str],
               compressions: dict[str, debpack.Compression], src: Path) -> Path:
    """Write the source tree gencontrol.sh consumes: debian/{control,changelog,
    shlibs.local}, debian/<package>/ (each package's files) and DEBIAN/<package>/ (control
    member extras). Returns it."""
    if src.exists():
        shutil.rmtree(src)
    licenses = yaml.safe_load((ctx.data.packaging / "licenses.yaml").read_text())
    split = split_payload(cell, payload)
    source_package = cell.package.name
    common = dict(cell=cell, packaging=cell.packaging, source_package=source_package,
                  source=payload.source, multiarch=cell.multiarch,
                  private_dir=PRIVATE_DIR, date=rfc2822(payload.source_date_epoch),
                  provenance=payload.provenance)
    render = ctx.data.render
    (src / "debian").mkdir(parents=True)
    (src / "debian/changelog").write_text(render("packaging/changelog.j2", **common))
    (src / "debian/control").write_text(render("packaging/control.j2", **common,
                                               packages=cell.packages))
    # Bundled sonames are provided by the package itself: no dependency.
    (src / "debian/shlibs.local").write_text("".join(
        f"{name} {ver}\n" for name, ver in (_split_soname(s) for s in payload.bundled)))
    for spec in cell.packages:
        rels = split[spec.name]
        # who made this package's files: a package another recipe's files were added to
        # describes only its own (so it stays what that recipe alone would make)
        origin = payload.origin(rels)
        recipe = origin.recipe or cell.recipe
        own = dict(common, source=origin.source, provenance=origin.provenance)
        changelog = render("packaging/changelog.j2", **own)
        root = src / "debian" / spec.name
        libdir = root / "usr/lib" / cell.multiarch
        docdir = root / "usr/share/doc" / spec.name
        extras = src / "DEBIAN" / spec.name
        for d in (libdir, docdir, root / "usr/share/lintian/overrides", extras):
            d.mkdir(parents=True)
        # Hard links: the payload is hundreds of MB and the package tree is a copy of it.
        for rel in rels:
            target = libdir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(payload.dir / rel, target)
        if _bundled_here(payload, rels) or any(rel.startswith(f"{PRIVATE_DIR}/") for rel in rels):
            # what libmxnet.so's RPATH ($ORIGIN/m) names: the private directory
            (libdir / PRIVATE_LINK).symlink_to(PRIVATE_DIR)
        bundled = []
        for soname in _bundled_here(payload, rels):
            info = licenses["libraries"].get(soname)
            if info is None:
                raise MxbuildError(f"bundled library {soname} has no copyright entry",
                                   "add it to packaging/licenses.yaml (copyright + license)")
            bundled.append({"file": soname, **info})
        values = dict(own, pkg=spec, bundled=bundled, license_texts=sorted(
            {licenses["licenses"][b["license"]].rstrip() for b in bundled}))
        (docdir / "copyright").write_text(render("packaging/copyright.j2", **values))
        (docdir / "changelog.Debian.gz").write_bytes(_gzip_n(changelog.encode()))
        (root / "usr/share/lintian/overrides" / spec.name).write_text(render(
            "packaging/lintian-overrides.j2", **values,
            payload_overrides=payload.lintian_overrides if spec is cell.package else (),
            package_overrides=spec.lintian_overrides))
        if any("/" not in rel for rel in rels):
            # a library in the multiarch directory itself: refresh the linker cache
            shutil.copy(ctx.data.packaging / "triggers", extras / "triggers")
        if spec.soname:
            # shlibs(5) cannot describe an unversioned SONAME (dpkg splits libfoo.so.N); a
            # symbols file is keyed by the whole SONAME, so consumers' dpkg-shlibdeps can
            # use it.
            (extras / "symbols").write_text(render("packaging/symbols.j2", **values))
        build_info = {
            "format": 1, "cell": dict(cell.build_info(spec), recipe=recipe),
            "recipe": recipe,
            "source": origin.source, "upstream_sha256": _upstream_here(payload, rels),
            "build_tools": dict(sorted(tools.items())),
            "source_date_epoch": payload.source_date_epoch,
            "deb_compression": compressions[spec.name].describe(),
            "tools": {"patchelf": importlib.metadata.version("patchelf")},
            # what provides each host soname (`NVIDIA's | the distro's` where both do)
            "host_provided": {so: cell.runtime_depends().get(so, pkg)
                              for so, pkg in cell.runtime_packages},
            "files": {f"usr/lib/{cell.multiarch}/{rel}": payload.files[rel]
                      for rel in sorted(rels)},
        }
        (docdir / "buildinfo.json").write_text(json.dumps(build_info, indent=2,
                                                          sort_keys=True) + "\n")
    return src


def _split_soname(soname: str) -> tuple[str, str]:
    m = re.match(r"^(.+)\.so\.(.+)$", soname) or re.match(r"^(.+)-(\d.*)\.so$", soname)
    if not m:
        raise MxbuildError(f"bundled library {soname} has no versioned SONAME",
                           "only libraries named libX.so.N can be bundled privately")
    return m.group(1), m.group(2)


def _gzip_n(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
        gz.write(data)
    return buf.getvalue()


def shared_payload(cell: Cell, payload: Payload, rels: list[str]) -> dict[str, str]:
    """A package's payload as it installs it (tree path → sha256): the part every distro
    of a variant holds byte for byte, compressed once."""
    return {f"usr/lib/{cell.multiarch}/{rel}": payload.files[rel] for rel in rels}


def compression_for(cell: Cell, payload: Payload, rels: list[str],
                    dpkg_version: str | None) -> debpack.Compression:
    """The package stage's choice for this target dpkg and payload size."""
    return debpack.choose(dpkg_version, cell.distro.name, payload.size(rels),
                          cell.arch.machine)


def host_depends(cell: Cell) -> str:
    """The Depends a package needing the host's sonames (CUDA runtime) gets: one entry per
    package, alternatives where the cell's distro has its own package (matrix.yaml
    runtime_packages), nothing for the driver."""
    return ", ".join(sorted(set(cell.runtime_depends().values())))


def build(ctx, cell: Cell, payload: Payload, build_ref: str, logf: IO[str],
          out_dir: Path) -> tuple[BuiltDeb, ...]:
    """Every package of the cell, checked by the target distro's own tools."""
    opts = ctx.opts
    # DEB_HOST_ARCH: the packages' architecture, which need not be the build image's (an
    # arm64 package is made in the amd64 compile image that holds the :arm64 libraries):
    # dpkg-shlibdeps then reads that architecture's multiarch directories with its cross
    # objdump, and dpkg-gencontrol writes it as Architecture.
    env = {"MULTIARCH": cell.multiarch, "PRIVATE_DIR": PRIVATE_DIR,
           "PRIVATE_LINK": PRIVATE_LINK, "DEB_HOST_ARCH": cell.arch.name}
    host = dict(cell.runtime_packages)
    if host:
        env |= {"HOST_SONAMES": " ".join(sorted(host)),
                "HOST_DEPENDS": host_depends(cell),
                "PATCHELF": f"{BUILD_HOME}/patchelf"}
    split = split_payload(cell, payload)
    own = dict(uid=BUILD_UID, gid=BUILD_UID)
    built = []
    with Container(ctx.docker, build_ref, label=f"package-{cell.id}", log_file=logf) as box:
        tools = build_tools(box, cell)
        compressions = {name: compression_for(cell, payload, rels, tools.get("dpkg"))
                        for name, rels in split.items()}
        src = stage_tree(ctx, cell, payload, tools, compressions,
                         opts.work_dir / cell.id / "pkgsrc")
        shutil.copy(ctx.data.packaging / "gencontrol.sh", src / "gencontrol.sh")
        box.copy_into(src, BUILD_HOME, arcname="pkgsrc", **own)
        if host:
            box.copy_into(patchelf_binary(), BUILD_HOME, **own)
        for spec in cell.packages:
            siblings = ", ".join(f"{dep} (= {cell.deb_version})" for dep in spec.depends_on)
            try:
                box.run(["sh", "gencontrol.sh", spec.name, f"{BUILD_HOME}/control/{spec.name}"],
                        user="builder", workdir=f"{BUILD_HOME}/pkgsrc",
                        env={**env, "SIBLING_DEPENDS": siblings})
            except CommandFailed as exc:
                raise MxbuildError(f"writing the control files of {spec.name} failed: {exc}\n"
                                   f"{exc.tail[-1200:]}", "")
        box.copy_out(f"{BUILD_HOME}/control", src)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        for spec in cell.packages:
            built.append(_assemble_and_check(ctx, box, cell, spec, payload, split[spec.name],
                                             compressions[spec.name], src, out_dir, logf))
    return tuple(built)


# params: one package's step of the package stage's loop, over that stage's locals
def _assemble_and_check(ctx, box, cell: Cell, spec: PackageSpec, payload: Payload,
                        rels: list[str], compression: debpack.Compression, src: Path,
                        out_dir: Path, logf: IO[str]) -> BuiltDeb:
    epoch = payload.source_date_epoch
    root = src / "debian" / spec.name
    assembled = debpack.assemble(root, src / "control" / spec.name,
                                 shared_payload(cell, payload, rels), epoch, compression,
                                 ctx.opts.cache_dir / "deb-parts", out_dir, locks=ctx.locks)
    data = assembled.data
    logf.write(f"{spec.name}: data.tar.xz: {data.tar_size} bytes → {data.size}; payload "
               f"part {(data.shared_key or 'none')[:16]} "
               f"{'reused' if data.shared_reused else 'compressed'} "
               f"({data.shared_tar_size} bytes of tar)\n")
    deb = assembled.path
    box.copy_into(deb, BUILD_HOME, uid=BUILD_UID, gid=BUILD_UID)
    inside = f"{BUILD_HOME}/{deb.name}"
    box.run(["dpkg-deb", "-I", inside], user="builder")
    listing = box.run(["dpkg-deb", "-c", inside], user="builder").output
    count = debpack.check_listing(listing, root, epoch, deb.name)
    logf.write(f"{cell.distro.name}'s dpkg-deb reads {deb.name}: {count} entries, "
               f"as packaged\n")
    lintian = box.run(["sh", "-c", f"lintian --info --display-level '>=pedantic' "
                       f"{inside}; echo lintian-exit=$?"], user="builder",
                      check=False).output
    logf.write(lintian)
    errors, warnings = lintian_counts(lintian)
    lintian_path(out_dir, spec.name).write_text(lintian)
    return BuiltDeb(spec.name, deb, deb.stat().st_size, sha256_file(deb), errors, warnings)


def built_debs(directory: Path, cell: Cell) -> tuple[BuiltDeb, ...]:
    """The .debs `build` left for a cell, one per package it ships; MxbuildError naming
    the command if any is missing."""
    out = []
    for spec in cell.packages:
        debs = sorted(directory.glob(f"{spec.name}_*.deb")) if directory.is_dir() else []
        if len(debs) != 1:
            raise MxbuildError(f"cell {cell.id} has no built {spec.name} .deb in {directory}",
                               f"build it first: invoke build --cell {cell.id} --publish none")
        deb = debs[0]
        lint = lintian_path(directory, spec.name)
        errors, warnings = lintian_counts(lint.read_text()) if lint.is_file() else (0, 0)
        out.append(BuiltDeb(spec.name, deb, deb.stat().st_size, sha256_file(deb), errors,
                            warnings))
    return tuple(out)


def payload_of(debs: tuple[BuiltDeb, ...], cell: Cell) -> Payload:
    """What the smoke suites need to know about built .debs, from their buildinfo.json:
    every installed library's sha256, what is bundled, where it came from."""
    from debian.debfile import DebFile
    prefix = f"usr/lib/{cell.multiarch}/"
    files: dict[str, str] = {}
    info = {}
    for built in debs:
        member = f"./usr/share/doc/{built.package}/buildinfo.json"
        try:
            info = json.loads(DebFile(str(built.path)).data.get_content(member))
        except (KeyError, ValueError) as exc:
            raise MxbuildError(f"{built.path.name} has no readable {member} ({exc})",
                               "rebuild it with this mxbuild")
        files |= {k[len(prefix):]: v for k, v in info["files"].items() if k.startswith(prefix)}
    bundled = tuple(PurePosixPath(rel).name for rel in sorted(files)
                    if PurePosixPath(rel).parent == PurePosixPath(PRIVATE_DIR))
    return Payload(debs[0].path.parent, files, {}, info["source"], info["source_date_epoch"],
                   bundled)


def lintian_counts(output: str) -> tuple[int, int]:
    errors = len(re.findall(r"^E: ", output, re.M))
    warnings = len(re.findall(r"^W: ", output, re.M))
    return errors, warnings
