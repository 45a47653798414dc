"""Recipe "compile": build libmxnet.so from an Apache MXNet source release.

Source (pinned release tarball, --source-tarball or --source-dir) → compile image (the
build image of the distro that compiles, plus CMake/Ninja/ccache and MXNet's build
dependencies) → `recipes/compile/build.sh` with the architecture layer and the variant's
preset, ccache in a Docker volume → stripped libmxnet.so → machine and ABI gates against
the architecture and distro that receive it.

The build machines are amd64: an arm64 cell is cross-compiled in an amd64 compile image
with Debian's cross toolchain and the distro's :arm64 libraries (arch_arm64.cmake,
toolchain_arm64.cmake), never under emulation.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from docker.types import Mount

from .. import images, source_tree
from .. import payload as payload_mod
from ..containers import CommandFailed, Container
from ..errors import AbiError, ConfigError, DownloadError, MxbuildError, SigningError
from ..fetch import copy_pinned, download_bytes, fetch_pinned, sha256_file
from ..matrix import Abi, Architecture, Cell, Distro
from ..matrix.schema import IMAGE_RE, SHA256_RE, SHA512_RE
from ..options import Options
from ..paths import module_digest
from ..payload import BUILD_HOME, BUILD_UID, Payload, patchelf_binary
from ..repo.sign import keyring_from_armored, verify_detached_file
from .registry import CellImages, Produced, Recipe, register

PROVENANCE = ("The library was compiled by mxbuild from the Apache MXNet source",
              "release ({source}).")
CCACHE_MOUNT = "/ccache"
SOURCE_OPTIONS = ("pass --source-tarball PATH (the release tarball, checked against the "
                  "pin in matrix.yaml) or --source-dir PATH (an unpacked source tree)")


@dataclass(frozen=True)
class Source:
    path: Path            # a verified tarball in the cache, or a directory
    is_dir: bool
    description: str      # for copyright and build-info
    epoch: int            # SOURCE_DATE_EPOCH: newest timestamp of the source


@dataclass(frozen=True)
class CompileReport:
    cache: dict[str, str]           # the CMake cache entries the preset controls
    ccache_hits: int
    ccache_misses: int
    abi: dict[str, str]             # GLIBC/GLIBCXX/CXXABI -> highest version required
    steps: dict[str, float]         # Ninja's steps: count, summed and wall seconds


# ---------------------------------------------------------------- its inputs

@dataclass(frozen=True)
class SourcePin:
    """An Apache MXNet source release: where it is and what its bytes must hash to."""
    version: str
    url: str
    sha512: str | None
    sha256: str | None
    signature_url: str | None = None   # the release's .asc
    keys_url: str | None = None        # the project's KEYS file

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class CompileSpec:
    """How a variant is compiled from source (recipe "compile")."""
    preset: str                          # recipes/compile/<preset>.cmake
    build_on: Distro | None = None     # distro whose image compiles; None: the cell's own
    toolkit_image: str | None = None     # GPU: NVIDIA's CUDA devel image (digest: pins file)
    toolkit_package: str | None = None   # GPU: the distro's CUDA toolkit package instead


@dataclass(frozen=True)
class CompileInputs:
    """What the recipe takes from matrix.yaml for a build's cells: the variant's preset
    (`variants.<v>.compile`) and the version's source release (`sources.<version>`)."""
    spec: CompileSpec | None
    source: SourcePin | None


def compile_spec(cell: Cell) -> CompileSpec | None:
    """How the cell's variant is compiled (None: the variant has no preset)."""
    inputs = cell.input_of(CompileRecipe.name)
    return inputs.spec if inputs else None


def source_pin(cell: Cell) -> SourcePin | None:
    """The source release of the cell's MXNet version (None: matrix.yaml pins none)."""
    inputs = cell.input_of(CompileRecipe.name)
    return inputs.source if inputs else None


def with_inputs(cell: Cell, **changes) -> Cell:
    """The cell with its compile inputs changed (spec=…, source=…): tests and --recipe."""
    inputs = cell.input_of(CompileRecipe.name) or CompileInputs(None, None)
    return cell.with_input(CompileRecipe.name, replace(inputs, **changes))


def parse_sources(c, spec) -> dict[str, SourcePin]:
    out = {}
    for version, pin, key in c.by_version(spec, "sources",
                                          "a mapping of mxnet version to url/sha512"):
        c.mapping(pin, key, {"url": "the source release URL"},
                  {"sha512": "128 lowercase hex", "sha256": "64 lowercase hex",
                   "signature": "the .asc URL", "keys": "the KEYS URL"})
        c.string(pin["url"], f"{key}.url", re.compile(r"^https?://.+\.tar\.gz$"),
                 "an http(s) URL of a .tar.gz")
        if "sha512" not in pin and "sha256" not in pin:
            c.fail(key, "has no checksum", "sha512 (or sha256) of the tarball")
        if "sha512" in pin:
            c.string(pin["sha512"], f"{key}.sha512", SHA512_RE, "128 lowercase hex digits")
        if "sha256" in pin:
            c.string(pin["sha256"], f"{key}.sha256", SHA256_RE, "64 lowercase hex digits")
        if ("signature" in pin) != ("keys" in pin):
            c.fail(key, "has only one of signature / keys", "both (the .asc and KEYS URLs)")
        out[version] = SourcePin(version, pin["url"], pin.get("sha512"), pin.get("sha256"),
                                 pin.get("signature"), pin.get("keys"))
    return out


def parse_compile(c, key: str, spec, distros) -> CompileSpec:
    c.mapping(spec, key, {"preset": "a file name under recipes/compile/ without .cmake"},
              {"build_on": "a distro name", "toolkit": "a mapping with image or package"})
    c.string(spec["preset"], f"{key}.preset", re.compile(r"^[a-z0-9_]+$"),
             "a preset name such as linux_cpu")
    build_on = spec.get("build_on")
    if build_on is not None and build_on not in distros:
        c.fail(f"{key}.build_on", f"{build_on!r} is not defined under distros",
               "one of " + ", ".join(distros))
    image = package = None
    if "toolkit" in spec:
        t = c.mapping(spec["toolkit"], f"{key}.toolkit", {},
                      {"image": "nvidia/cuda:<tag> (digest: pins.lock)",
                       "package": "the distro's CUDA toolkit package"})
        if ("image" in t) == ("package" in t):
            c.fail(f"{key}.toolkit", "needs exactly one of image / package",
                   "image: nvidia/cuda:<tag> or package: nvidia-cuda-toolkit")
        if "image" in t:
            image = c.string(t["image"], f"{key}.toolkit.image", IMAGE_RE,
                             "a registry image name:tag; its digest belongs in pins.lock")
        else:
            package = c.string(t["package"], f"{key}.toolkit.package")
    return CompileSpec(spec["preset"], distros[build_on] if build_on else None, image, package)


# ---------------------------------------------------------------- source

def pin_digest(pin: SourcePin) -> tuple[str, str]:
    return ("sha512", pin.sha512) if pin.sha512 else ("sha256", pin.sha256)


def source_identity(opts: Options, cell: Cell) -> dict | None:
    """What identifies the source a build would read (a stage-cache key input), or None:
    no source. --source-tarball is checked against the pin, so the pin names it."""
    if opts.source_dir:
        if not opts.source_dir.is_dir():
            return None                     # resolve_source says what is wrong
        return {"tree": opts.source_dir.name, "sha256": source_tree.digest(opts.source_dir)}
    pin = source_pin(cell)
    if pin is not None:
        return dict([pin_digest(pin)])
    return None


def resolve_source(cell: Cell, opts: Options, logf: IO[str]) -> Source:
    pin = source_pin(cell)
    if opts.source_dir:
        tree = opts.source_dir
        if not (tree / "CMakeLists.txt").is_file():
            raise ConfigError(f"--source-dir {tree} has no CMakeLists.txt",
                              "point it at the top of an unpacked MXNet source tree")
        logf.write(f"source: directory {tree} (given by --source-dir, not checked against a pin)\n")
        return Source(tree, True, f"source tree {tree.name}", _tree_epoch(tree))
    if pin is None:
        raise ConfigError(f"matrix.yaml pins no source release for MXNet {cell.mxnet}",
                          f"add sources.\"{cell.mxnet}\" (url, sha512) to matrix.yaml, or "
                          "pass --source-dir PATH")
    algo, digest = pin_digest(pin)
    cache = opts.cache_dir / "downloads"
    if opts.source_tarball:
        given = opts.source_tarball
        if not given.is_file():
            raise ConfigError(f"--source-tarball {given} does not exist", SOURCE_OPTIONS)
        tarball = copy_pinned(given, digest, cache, algo)
        signature = _local_signature(given)
    else:
        try:
            tarball = fetch_pinned(pin.url, digest, cache, opts.extra_ca_bundle, algo)
            signature = _remote_signature(pin, opts)
        except DownloadError as exc:
            raise DownloadError(
                f"cannot download the MXNet {cell.mxnet} source release ({exc.message}); "
                "this machine may have no route to the Apache archive", SOURCE_OPTIONS)
    logf.write(f"source: {tarball.name} {algo} {digest} verified\n")
    if signature is None:
        logf.write("source: no .asc/KEYS available, signature not checked (the pinned "
                   f"{algo} is)\n")
    else:
        asc, keys = signature
        problem = verify_detached_file(tarball, asc, keyring_from_armored(keys))
        if problem:
            raise SigningError(f"the signature of {tarball.name} does not verify against "
                               f"KEYS: {problem}", "do not build from this tarball; fetch "
                               "it again from the Apache archive")
        logf.write("source: signature verified against KEYS\n")
    return Source(tarball, False, f"{pin.filename} ({algo} {digest})", _tar_epoch(tarball))


def _local_signature(tarball: Path) -> tuple[bytes, bytes] | None:
    """PATH.asc and a KEYS file next to a given tarball, if the user downloaded them."""
    asc, keys = Path(f"{tarball}.asc"), tarball.parent / "KEYS"
    if asc.is_file() and keys.is_file():
        return asc.read_bytes(), keys.read_bytes()
    return None


def _remote_signature(pin: SourcePin, opts: Options) -> tuple[bytes, bytes] | None:
    if not pin.signature_url:
        return None
    return (download_bytes(pin.signature_url, opts.extra_ca_bundle),
            download_bytes(pin.keys_url, opts.extra_ca_bundle))


def _tar_epoch(tarball: Path) -> int:
    with tarfile.open(tarball) as tar:
        return max((int(m.mtime) for m in tar), default=0)


def _tree_epoch(tree: Path) -> int:
    newest = 0
    for base, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            try:
                newest = max(newest, int(os.lstat(os.path.join(base, name)).st_mtime))
            except OSError:
                pass
    return newest


# ---------------------------------------------------------------- ABI gate

UND_VERSIONED = re.compile(r"\bUND\s+([^\s@]+)@+(GLIBC|GLIBCXX|CXXABI)_([0-9][0-9.]*)")


def _v(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def abi_requirements(dyn_syms: str) -> dict[str, tuple[str, list[str]]]:
    """From `readelf --dyn-syms --wide`: for GLIBC, GLIBCXX and CXXABI, the highest version
    an undefined symbol needs and the symbols that need it."""
    out: dict[str, tuple[str, list[str]]] = {}
    for symbol, family, version in UND_VERSIONED.findall(dyn_syms):
        best = out.get(family)
        if best is None or _v(version) > _v(best[0]):
            out[family] = (version, [symbol])
        elif _v(version) == _v(best[0]) and symbol not in best[1]:
            best[1].append(symbol)
    return out


def abi_gate(required: dict[str, tuple[str, list[str]]], abi: Abi, distro: str) -> None:
    """Raise AbiError if the library needs newer glibc/libstdc++ symbols than `distro` has."""
    problems = []
    for family, provided in (("GLIBC", abi.glibc), ("GLIBCXX", abi.glibcxx)):
        if family in required and _v(required[family][0]) > _v(provided):
            version, symbols = required[family]
            problems.append(f"{family}_{version} (for {', '.join(sorted(symbols)[:5])}) but "
                            f"{distro} provides {family}_{provided}")
    if problems:
        raise AbiError("libmxnet.so needs " + "; ".join(problems),
                       f"compile on the oldest distro that receives the binary "
                       f"(variants.<variant>.compile.build_on), or drop {distro} from the build")


def elf_machine(readelf_header: str) -> str | None:
    """The `Machine:` of `readelf -h` output, e.g. AArch64."""
    m = re.search(r"^\s*Machine:\s+(.+?)\s*$", readelf_header, re.M)
    return m.group(1) if m else None


def machine_gate(readelf_header: str, arch: Architecture, what: str, fix: str) -> None:
    """Raise AbiError unless the binary is for `arch` (readelf -h's Machine is its
    elf_machine): a cross compile that fell back to the build machine's compiler must not
    be packaged as arm64."""
    found = elf_machine(readelf_header)
    if found != arch.elf_machine:
        raise AbiError(f"{what} is built for {found or 'an unknown machine'}, not for "
                       f"{arch.name} ({arch.elf_machine}, architectures.{arch.name}."
                       "elf_machine)", fix)


# ---------------------------------------------------------------- compile

def ninja_log_steps(ninja_log: str) -> dict[tuple[int, int, str], list[str]]:
    """The steps of a build's .ninja_log (v5: start, end, mtime, output, command hash; ms):
    (start, end, command hash) → the outputs it wrote. A step with several outputs has one
    line per output: one step."""
    steps: dict[tuple[int, int, str], list[str]] = {}
    for line in ninja_log.splitlines():
        fields = line.split("\t")
        if line.startswith("#") or len(fields) < 5:
            continue
        steps.setdefault((int(fields[0]), int(fields[1]), fields[4]), []).append(fields[3])
    return steps


def ninja_steps(ninja_log: str) -> dict[str, float]:
    """The number of steps of a .ninja_log, their summed time and the wall time (s)."""
    steps = ninja_log_steps(ninja_log)
    if not steps:
        return {"count": 0, "seconds": 0.0, "wall_seconds": 0.0}
    return {"count": len(steps),
            "seconds": round(sum(end - start for start, end, _ in steps) / 1000, 3),
            "wall_seconds": round((max(e for _, e, _ in steps)
                                   - min(s for s, _, _ in steps)) / 1000, 3)}


def ccache_counts(stats: str) -> tuple[int, int]:
    """(hits, misses) from `ccache --show-stats` of ccache 3.x or 4.x."""
    hits = misses = 0
    m = re.search(r"^\s*Hits:\s+(\d+)", stats, re.M)                    # 4.x
    if m:
        hits = int(m.group(1))
        mm = re.search(r"^\s*Misses:\s+(\d+)", stats, re.M)
        misses = int(mm.group(1)) if mm else 0
    else:                                                                # 3.x
        for kind in ("direct", "preprocessed"):
            h = re.search(rf"^cache hit \({kind}\)\s+(\d+)", stats, re.M)
            hits += int(h.group(1)) if h else 0
        mm = re.search(r"^cache miss\s+(\d+)", stats, re.M)
        misses = int(mm.group(1)) if mm else 0
    return hits, misses


def parse_cmake_cache(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_]+):[A-Z]+=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


class CompileRecipe(Recipe):
    """A compile is a once-per-release cost: its payload is stored in the stage cache (and
    the artifact cache behind it, so another machine gets it without compiling), keyed by
    the source (the pinned digest, or the digest of the --source-dir tree), the preset and
    the images that compile it; ccache in a Docker volume makes a re-run after any change
    cheap."""
    name = "compile"
    takes_source = True
    runs_upstream_tests = True
    reuse_reason = "stage cache: same source, preset and compile image"
    matrix_keys = {"matrix": {"sources": "a mapping of mxnet version to its source release "
                                         "pin"},
                   "variant": {"compile": "a mapping: preset, build_on, toolkit"}}

    def parse_inputs(self, scope, check) -> CompileInputs | None:
        sources = scope.once("sources", lambda: parse_sources(check, scope.doc.get("sources",
                                                                                  {})))
        key = f"{scope.variant_key}.compile"
        spec = (scope.once(key, lambda: parse_compile(check, key, scope.variant["compile"],
                                                      scope.distros))
                if "compile" in scope.variant else None)
        source = sources.get(scope.mxnet)
        return CompileInputs(spec, source) if spec or source else None

    def pinned_images(self, cell: Cell) -> tuple[str, ...]:
        spec = compile_spec(cell)
        return (spec.toolkit_image,) if spec and spec.toolkit_image else ()

    def unfit(self, cell: Cell) -> tuple[str, str] | None:
        if compile_spec(cell) is None:
            return (f"variant {cell.variant} has no compile preset",
                    f"add variants.{cell.variant}.compile to matrix.yaml, or use recipe wheel")
        return self.arch_unfit(cell)

    def builds_for(self, cell: Cell) -> str | None:
        # the build machines are the primary architecture; others need a cross toolchain
        if cell.arch.primary:
            return None
        if cell.arch.cross is None:
            return (f"the build machines are not {cell.arch.name} and architectures."
                    f"{cell.arch.name} names no cross toolchain (cross.packages)")
        if cell.cuda is not None:
            return f"it cross-compiles no CUDA code (no {cell.arch.name} CUDA toolkit here)"
        return None

    def cache_inputs(self, ctx, cell: Cell, build_ref: str) -> dict | None:
        spec, opts = compile_spec(cell), ctx.opts
        if spec is None:
            return None
        source = source_identity(opts, cell)
        if source is None:
            return None
        host = spec.build_on or cell.distro
        return {"code": module_digest(payload_mod, source_tree, sys.modules[__name__]),
                "source": source, "preset": spec.preset, "build_on": host.name,
                "toolkit": [spec.toolkit_image, spec.toolkit_package],
                "host_base": images.base_tag(host), "build_image": build_ref,
                "arch": cell.arch.name,
                "recipe_files": ctx.data.digest("recipes/compile"),
                "image_files": ctx.data.digest("docker/build.Dockerfile.j2",
                                               "docker/compile.Dockerfile.j2"),
                "abi": [cell.distro.abi.glibc, cell.distro.abi.glibcxx]
                if cell.distro.abi else None,
                "source_date_epoch": opts.source_date_epoch}

    def plan(self, ctx, cell: Cell) -> tuple[str, str]:
        opts = ctx.opts
        preset = compile_spec(cell).preset
        how = (preset if cell.arch.cross is None else
               f"{preset}, cross-compiled for {cell.arch.name}")
        if opts.source_dir:
            return "run", (f"compile {opts.source_dir} with {how} "
                           f"(ccache volume {opts.ccache_volume})")
        if source_pin(cell) is None and not opts.source_tarball:
            return "fail", (f"no source release pinned for {cell.mxnet}: pass "
                            "--source-tarball or --source-dir")
        return "run", f"compile the {cell.mxnet} source release with {how}"

    def package_image(self, ctx, cell: Cell, images_: CellImages, logf: IO[str]):
        """The receiving distro's compile image: dpkg-shlibdeps maps each NEEDED soname
        (OpenBLAS, OpenCV, ZeroMQ, protobuf…) to the package that ships it, so those must
        be installed where it runs (the CUDA toolkit image is not needed for that). For
        arm64 that is the arm64 compile image: amd64's dpkg tools and the :arm64 libraries
        (`images_.build`: the build machines' amd64 build image of the distro)."""
        return images.ensure_compile_image(ctx, cell, images_.build, logf)

    def produce(self, ctx, cell: Cell, images_: CellImages, logf: IO[str]) -> Produced:
        payload, compiled = compile_cell(ctx, cell, logf, images_.build)
        return Produced(payload, {"compile": {
            "cache": compiled.cache, "abi": compiled.abi, "arch": cell.arch.name,
            "ccache": {"hits": compiled.ccache_hits, "misses": compiled.ccache_misses},
            "steps": compiled.steps,
            "ninja_log": str(ctx.opts.work_dir / cell.id / "compile" / "ninja-log.txt")}})


def compile_cell(ctx, cell: Cell, logf: IO[str],
                 build: "images.ImageRef | None" = None) -> tuple[Payload, CompileReport]:
    """Compile libmxnet.so for `cell` and return it as the package payload. `build`: the
    build machines' (amd64) build image of the cell's distro, as the image stage made it
    (for an arm64 cell too); None: made here."""
    client, opts = ctx.docker, ctx.opts
    recipe_dir = ctx.data.recipe("compile")
    spec = compile_spec(cell)
    if spec is None:
        raise ConfigError(f"variant {cell.variant} has no compile preset",
                          f"add variants.{cell.variant}.compile to matrix.yaml")
    if cell.distro.abi is None:
        raise ConfigError(f"distros.{cell.distro.name}.abi is not set",
                          "add abi: {glibc: 'X.Y', glibcxx: '3.4.N'} (what its libc6 and "
                          "libstdc++6 provide) so the ABI gate can check the binary")
    preset = recipe_dir / f"{spec.preset}.cmake"
    if not preset.is_file():
        raise ConfigError(f"preset {preset} does not exist",
                          f"add it or fix variants.{cell.variant}.compile.preset")
    layer = recipe_dir / f"arch_{cell.arch.name}.cmake"
    if not layer.is_file():
        raise ConfigError(f"architecture layer {layer} does not exist",
                          f"add it: the compiler flags (and cross toolchain) for "
                          f"{cell.arch.name}, like arch_amd64.cmake")
    source = resolve_source(cell, opts, logf)
    need = source_tree.required(source_tree.preset_values(layer, preset), cell.cuda)
    check = source_tree.check_dir if source.is_dir else source_tree.check_tarball
    check(source.path, cell.mxnet, need)
    logf.write(f"source: MXNet {cell.mxnet}, {len(need)} required parts present "
               f"({', '.join(m.path.split('/')[1] for m in need)})\n")

    # The distro whose image compiles (build_on) may be older than the cell's: the ABI
    # gate below checks the binary against the distro that receives it. The image is the
    # build machines' own (amd64): for another architecture the compile image adds the
    # cross toolchain and that architecture's libraries (images.ensure_compile_image).
    host = spec.build_on or cell.distro
    host_cell = replace(cell, distro=host)
    if build is None or host != cell.distro:
        base = images.ensure_base(ctx, host, logf)
        build = images.ensure_build_image(ctx, host_cell, base, logf)
    image = images.ensure_compile_image(ctx, host_cell, build, logf, spec.toolkit_image,
                                        spec.toolkit_package)

    work = opts.work_dir / cell.id
    result_dir = work / "compile"
    for stale in (result_dir, work / "out"):
        if stale.exists():
            shutil.rmtree(stale)
    extra = ["-DCMAKE_CUDA_COMPILER=/usr/bin/nvcc"] if spec.toolkit_package else []
    mounts = [Mount(CCACHE_MOUNT, opts.ccache_volume, type="volume")]
    with Container(client, image.ref, label=f"compile-{cell.id}", mounts=mounts,
                   log_file=logf) as box:
        box.run(["chown", f"{BUILD_UID}:{BUILD_UID}", CCACHE_MOUNT])
        own = dict(uid=BUILD_UID, gid=BUILD_UID)
        box.copy_into(recipe_dir, BUILD_HOME, arcname="recipe", **own)
        box.copy_into(patchelf_binary(), BUILD_HOME, **own)
        if source.is_dir:
            box.copy_into(source.path, BUILD_HOME, arcname="src", **own)
        else:
            box.copy_into(source.path, BUILD_HOME, arcname="source.tar.gz", **own)
            box.run(["sh", "-c", "mkdir src && tar -xzf source.tar.gz -C src "
                     "--strip-components=1 && rm source.tar.gz"], user="builder",
                    workdir=BUILD_HOME)
        try:
            box.run(["sh", "recipe/build.sh", f"{BUILD_HOME}/src",
                     f"{BUILD_HOME}/recipe/{layer.name}",
                     f"{BUILD_HOME}/recipe/{preset.name}", f"{BUILD_HOME}/out",
                     str(opts.compile_jobs), *extra], user="builder", workdir=BUILD_HOME,
                    env={"CCACHE_DIR": CCACHE_MOUNT, "PATCHELF": f"{BUILD_HOME}/patchelf"})
        except CommandFailed as exc:
            raise MxbuildError(f"compiling libmxnet.so failed: {exc}\n{exc.tail[-2000:]}",
                               f"see the recipe log; preset {preset}")
        box.copy_out(f"{BUILD_HOME}/out", work)
    (work / "out").rename(result_dir)

    required = abi_requirements((result_dir / "dyn-syms.txt").read_text())
    hits, misses = ccache_counts((result_dir / "ccache-stats.txt").read_text())
    steps = ninja_steps((result_dir / "ninja-log.txt").read_text())
    report = CompileReport(parse_cmake_cache((result_dir / "cmake-cache.txt").read_text()),
                           hits, misses, {k: v for k, (v, _) in required.items()}, steps)
    logf.write(f"ccache: {hits} hits, {misses} misses\nABI: {report.abi}\n"
               f"ninja: {steps['count']} steps, {steps['seconds']} s summed, "
               f"{steps['wall_seconds']} s wall\n")
    machine_gate((result_dir / "elf-header.txt").read_text(), cell.arch, "libmxnet.so",
                 f"the compile did not use the {cell.arch.name} toolchain: check "
                 f"recipes/compile/{layer.name} and architectures.{cell.arch.name} in "
                 "matrix.yaml")
    abi_gate(required, cell.distro.abi, cell.distro.name)

    payload_dir = work / "payload"
    if payload_dir.exists():
        shutil.rmtree(payload_dir)
    payload_dir.mkdir(parents=True)
    shutil.move(str(result_dir / "libmxnet.so"), payload_dir / "libmxnet.so")
    description = (f"{source.description}, compiled with {preset.name} on {host.name}"
                   + ("" if cell.arch.primary else f" for {cell.arch.name}"))
    payload = Payload(payload_dir, {"libmxnet.so": sha256_file(payload_dir / "libmxnet.so")},
                      {}, description, opts.source_date_epoch or source.epoch,
                      provenance=tuple(line.format(source=description) for line in PROVENANCE))
    payload.save()
    return payload, report


register(CompileRecipe())
