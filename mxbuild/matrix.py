"""Load and validate matrix.yaml into frozen dataclasses; select cells.

A cell is one point of the matrix: (mxnet version, variant, distro). Its id,
e.g. ``1.9.1-cpu-debian12``, keys everything downstream.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import yaml

from .errors import MatrixError, SelectionError

# The distro names users type, and the apt suite (codename) each one means.
KNOWN_DISTROS = {
    "ubuntu16": "xenial", "ubuntu18": "bionic", "ubuntu20": "focal",
    "ubuntu22": "jammy", "ubuntu24": "noble",
    "debian11": "bullseye", "debian12": "bookworm", "debian13": "trixie",
}
RECIPES = ("wheel", "compile")
STAGING = "staging"
VARIANT_RE = re.compile(r"^(cpu|cu\d{2,3})$")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(\.post\d+)?$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
FPR_RE = re.compile(r"^[0-9A-F]{40}$")
DIGEST_REF_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$")
SHA512_RE = re.compile(r"^[0-9a-f]{128}$")
ABI_RE = re.compile(r"^\d+(\.\d+)+$")


@dataclass(frozen=True)
class PackageInfo:
    name: str
    revision: int
    maintainer: str
    homepage: str


@dataclass(frozen=True)
class KeyringPackage:
    """A keyring shipped in a .deb that the host does not carry (Ubuntu's on Debian):
    fetched over http, trusted only if its sha256 matches the pin."""
    url: str
    sha256: str
    path: str          # the keyring file inside the package


@dataclass(frozen=True)
class BootstrapSpec:
    suite: str
    mirror: str
    keyring: str                      # a host path, or the path inside keyring_package
    key_fingerprint: str
    components: tuple[str, ...]
    keyring_package: KeyringPackage | None = None
    script: str | None = None         # debootstrap script when the host lacks the suite's


@dataclass(frozen=True)
class BaseSpec:
    """Either a registry reference pinned by digest, or a debootstrap recipe."""
    image: str | None = None
    bootstrap: BootstrapSpec | None = None


@dataclass(frozen=True)
class SmokeSpec:
    python: str
    pip: tuple[str, ...]
    pip_upgrade: str | None = None    # the distro's pip is too old for manylinux2014 wheels
    numpy_compat: bool = False        # numpy >= 1.24: restore the aliases MXNet 1.9 uses
    # False: the wheel's own requirements cannot be met on this Python (numpy < 2 has no
    # wheels for 3.13), so it is installed with --no-deps and `pip` lists what it needs.
    wheel_deps: bool = True


@dataclass(frozen=True)
class Abi:
    """The newest symbol versions a distro's libc6 and libstdc++6 provide."""
    glibc: str        # e.g. "2.31"
    glibcxx: str      # e.g. "3.4.28"


@dataclass(frozen=True)
class Distro:
    name: str
    codename: str
    version_tag: str
    multiarch: str
    base: BaseSpec
    smoke: SmokeSpec
    abi: Abi | None = None


@dataclass(frozen=True)
class WheelPin:
    name: str
    version: str
    filename: str
    sha256: str
    bundled: tuple[str, ...]


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
    build_on: "Distro | None" = None     # distro whose image compiles; None: the cell's own
    toolkit_image: str | None = None     # GPU: NVIDIA's CUDA devel image, pinned by digest
    toolkit_package: str | None = None   # GPU: the distro's CUDA toolkit package instead


@dataclass(frozen=True)
class Cell:
    mxnet: str
    variant: str
    cuda: str | None
    distro: Distro
    recipe: str
    wheel: WheelPin | None
    features: tuple[tuple[str, bool], ...]
    package: PackageInfo
    # NEEDED soname -> package providing it on the host ("driver": the NVIDIA driver)
    runtime_packages: tuple[tuple[str, str], ...] = ()
    compile: CompileSpec | None = None   # set when the variant can be compiled
    source: SourcePin | None = None      # the source release of this mxnet version
    # The official wheel the thin client of this MXNet version is made from: the same for
    # every cell of the version (the cpu build's, else the first GPU variant's).
    client_wheel: WheelPin | None = None

    @property
    def bundled(self) -> tuple[str, ...]:
        """Libraries shipped privately next to libmxnet.so (only the wheel carries any)."""
        return self.wheel.bundled if self.recipe == "wheel" and self.wheel else ()

    def with_recipe(self, recipe: str) -> "Cell":
        """This cell built by another recipe; SelectionError if the matrix cannot."""
        if recipe == self.recipe:
            return self
        if recipe not in RECIPES:
            raise SelectionError(f"unknown recipe {recipe!r}", "use wheel or compile")
        if recipe == "compile":
            if self.compile is None:
                raise SelectionError(f"{self.id}: variant {self.variant} has no compile preset",
                                     f"add variants.{self.variant}.compile to matrix.yaml")
        elif self.wheel is None:
            raise SelectionError(f"{self.id}: no wheel pin", "add the build's wheel pin")
        return replace(self, recipe=recipe)

    @property
    def id(self) -> str:
        return f"{self.mxnet}-{self.variant}-{self.distro.name}"

    @property
    def codename(self) -> str:
        return self.distro.codename

    @property
    def component(self) -> str:
        return self.variant

    def suite(self, staging: bool = False) -> str:
        """The apt suite it is published to: its codename, or `<codename>-staging` where
        release CI publishes first (promoted with `invoke repo.promote`)."""
        return f"{self.codename}-{STAGING}" if staging else self.codename

    @property
    def deb_version(self) -> str:
        """Upstream version + packaging revision + distro tag, e.g. 1.9.1-1~deb12."""
        return deb_version(self.mxnet, self.package.revision, self.distro.version_tag)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id, "mxnet": self.mxnet, "variant": self.variant,
            "cuda": self.cuda, "distro": self.distro.name, "codename": self.codename,
            "recipe": self.recipe, "package": self.package.name,
            "version": self.deb_version,
        }


def deb_version(upstream: str, revision: int, distro_tag: str) -> str:
    # "~" sorts before anything, so a later plain "-1" upload still supersedes ours.
    return f"{upstream}-{revision}~{distro_tag}"


@dataclass(frozen=True)
class Matrix:
    path: str
    package: PackageInfo
    distros: dict[str, Distro] = field(hash=False)
    cells: tuple[Cell, ...]

    def select(self, variant=None, cuda=None, distro=None, mxnet=None, cell=None) -> list[Cell]:
        return select(self.cells, variant=variant, cuda=cuda, distro=distro, mxnet=mxnet, cell=cell)


# ---------------------------------------------------------------- validation

class _Checker:
    """Walks the YAML tree; every complaint names the file and key path."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, key: str, problem: str, expected: str):
        raise MatrixError(self.path, key, problem, expected)

    def mapping(self, value, key, required: dict[str, str], optional: dict[str, str] | None = None):
        optional = optional or {}
        if not isinstance(value, dict):
            self.fail(key, f"is a {type(value).__name__}", "a mapping with keys "
                      + ", ".join(sorted({**required, **optional})))
        for k in value:
            if k not in required and k not in optional:
                self.fail(_join(key, str(k)), "unknown key",
                          "one of: " + ", ".join(sorted({**required, **optional})))
        for k, form in required.items():
            if k not in value:
                self.fail(_join(key, k), "missing", form)
        return value

    def string(self, value, key, pattern: re.Pattern | None = None, form="a string"):
        if not isinstance(value, str) or not value:
            self.fail(key, f"is {value!r}", form)
        if pattern and not pattern.match(value):
            self.fail(key, f"{value!r} is malformed", form)
        return value

    def version(self, value, key):
        # YAML reads 1.9 as a float: insist on quoted or x.y.z strings.
        if not isinstance(value, str):
            self.fail(key, f"is {value!r} ({type(value).__name__})", "a version string like 1.9.1")
        return self.string(value, key, VERSION_RE, "a version string like 1.9.1 or 1.6.0.post0")

    def str_list(self, value, key, form="a list of strings"):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(key, f"is {value!r}", form)
        return tuple(value)


def _join(prefix: str, key) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def load(path: str | Path) -> Matrix:
    path = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise MatrixError(path, "", f"cannot be read ({exc.strerror})", "a readable YAML file")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "somewhere"
        raise MatrixError(path, "", f"is not valid YAML ({where})", "valid YAML")
    return parse(doc, path)


def parse(doc: Any, path: str = "matrix.yaml") -> Matrix:
    c = _Checker(path)
    if isinstance(doc, dict):  # x-… keys only hold YAML anchors
        doc = {k: v for k, v in doc.items() if not str(k).startswith("x-")}
    c.mapping(doc, "", {"schema": "1", "package": "a mapping", "distros": "a mapping",
                        "variants": "a mapping"},
              {"sources": "a mapping of mxnet version to its source release pin"})
    if doc["schema"] != 1:
        c.fail("schema", f"is {doc['schema']!r}", "1 (the only schema this mxbuild reads)")

    p = c.mapping(doc["package"], "package", {"name": "the Debian package name",
                                              "revision": "a positive integer",
                                              "maintainer": "'Name <email>'"},
                  {"homepage": "a URL"})
    c.string(p["name"], "package.name", re.compile(r"^[a-z0-9][a-z0-9.+-]+$"),
             "a Debian package name (lowercase letters, digits, . + -)")
    if not isinstance(p["revision"], int) or isinstance(p["revision"], bool) or p["revision"] < 1:
        c.fail("package.revision", f"is {p['revision']!r}", "a positive integer")
    c.string(p["maintainer"], "package.maintainer", re.compile(r"^[^<>]+ <[^<>@]+@[^<>]+>$"),
             "'Name <email>'")
    package = PackageInfo(p["name"], p["revision"], p["maintainer"],
                          p.get("homepage", "https://mxnet.apache.org"))

    if not isinstance(doc["distros"], dict) or not doc["distros"]:
        c.fail("distros", "is empty or not a mapping", "a mapping of distro name to its settings")
    distros = {name: _parse_distro(c, name, spec) for name, spec in doc["distros"].items()}

    sources = _parse_sources(c, doc.get("sources", {}))

    if not isinstance(doc["variants"], dict) or not doc["variants"]:
        c.fail("variants", "is empty or not a mapping", "a mapping of variant name to its builds")
    cells: list[Cell] = []
    seen: dict[str, str] = {}
    for vname, vspec in doc["variants"].items():
        for cell, key in _parse_variant(c, vname, vspec, distros, package, sources):
            if cell.id in seen:
                c.fail(key, f"cell {cell.id} is defined twice (first at {seen[cell.id]})",
                       "each (mxnet, variant, distro) once")
            seen[cell.id] = key
            cells.append(cell)
    return Matrix(path, package, distros,
                  tuple(sorted(_with_client_wheels(cells), key=lambda x: x.id)))


def _with_client_wheels(cells: list[Cell]) -> list[Cell]:
    canonical: dict[str, WheelPin] = {}
    for cell in sorted(cells, key=lambda c: (c.variant != "cpu", c.variant, c.distro.name)):
        canonical.setdefault(cell.mxnet, cell.wheel)
    return [replace(cell, client_wheel=canonical[cell.mxnet]) for cell in cells]


def _parse_sources(c: _Checker, spec) -> dict[str, SourcePin]:
    if not isinstance(spec, dict):
        c.fail("sources", f"is {spec!r}", "a mapping of mxnet version to url/sha512")
    out = {}
    for version, pin in spec.items():
        key = f"sources.{version}"
        c.version(version, key)
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


def _parse_compile(c: _Checker, key: str, spec, distros) -> CompileSpec:
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
                      {"image": "nvidia/cuda:<tag>@sha256:<64 hex>",
                       "package": "the distro's CUDA toolkit package"})
        if ("image" in t) == ("package" in t):
            c.fail(f"{key}.toolkit", "needs exactly one of image / package",
                   "image: nvidia/cuda:…@sha256:… or package: nvidia-cuda-toolkit")
        if "image" in t:
            image = c.string(t["image"], f"{key}.toolkit.image", DIGEST_REF_RE,
                             "a registry reference pinned by digest, name@sha256:<64 hex>")
        else:
            package = c.string(t["package"], f"{key}.toolkit.package")
    return CompileSpec(spec["preset"], distros[build_on] if build_on else None, image, package)


def _parse_distro(c: _Checker, name, spec) -> Distro:
    key = f"distros.{name}"
    if name not in KNOWN_DISTROS:
        c.fail(key, f"unknown distro name {name!r}", "one of " + ", ".join(KNOWN_DISTROS))
    c.mapping(spec, key, {"codename": "the apt suite", "version_tag": "e.g. deb12",
                          "multiarch": "e.g. x86_64-linux-gnu", "base": "a mapping",
                          "smoke": "a mapping"},
              {"abi": "glibc/glibcxx versions the distro provides"})
    if spec["codename"] != KNOWN_DISTROS[name]:
        c.fail(f"{key}.codename", f"is {spec['codename']!r}", repr(KNOWN_DISTROS[name]))
    c.string(spec["version_tag"], f"{key}.version_tag", re.compile(r"^[a-z0-9.]+$"),
             "lowercase letters, digits and dots, e.g. deb12 or ubuntu16.04")
    c.string(spec["multiarch"], f"{key}.multiarch", re.compile(r"^[a-z0-9_]+-linux-gnu$"),
             "a multiarch triplet such as x86_64-linux-gnu")
    base = c.mapping(spec["base"], f"{key}.base", {}, {"image": "name@sha256:<64 hex>",
                                                      "bootstrap": "a mapping"})
    if ("image" in base) == ("bootstrap" in base):
        c.fail(f"{key}.base", "needs exactly one of image / bootstrap",
               "either `image: name@sha256:<digest>` or a `bootstrap:` mapping")
    if "image" in base:
        c.string(base["image"], f"{key}.base.image", DIGEST_REF_RE,
                 "a registry reference pinned by digest, name@sha256:<64 hex>")
        base_spec = BaseSpec(image=base["image"])
    else:
        bkey = f"{key}.base.bootstrap"
        b = c.mapping(base["bootstrap"], bkey,
                      {"suite": "the suite to debootstrap", "mirror": "an http(s) archive URL",
                       "keyring": "path of the archive keyring",
                       "key_fingerprint": "40 uppercase hex digits"},
                      {"components": "a list such as [main]",
                       "keyring_package": "a mapping with url and sha256",
                       "script": "a debootstrap script name such as gutsy"})
        kp = None
        if "keyring_package" in b:
            k = c.mapping(b["keyring_package"], f"{bkey}.keyring_package",
                          {"url": "the .deb's http(s) URL", "sha256": "64 lowercase hex"})
            kp = KeyringPackage(
                c.string(k["url"], f"{bkey}.keyring_package.url", re.compile(r"^https?://.+\.deb$"),
                         "an http(s) URL of a .deb"),
                c.string(k["sha256"], f"{bkey}.keyring_package.sha256", SHA256_RE,
                         "64 lowercase hex digits (sha256 of the .deb)"),
                b["keyring"])
        c.string(b["mirror"], f"{bkey}.mirror", re.compile(r"^https?://"), "an http(s) URL")
        c.string(b["key_fingerprint"], f"{bkey}.key_fingerprint", FPR_RE,
                 "a full OpenPGP fingerprint: 40 uppercase hex digits")
        base_spec = BaseSpec(bootstrap=BootstrapSpec(
            c.string(b["suite"], f"{bkey}.suite"), b["mirror"],
            c.string(b["keyring"], f"{bkey}.keyring"), b["key_fingerprint"],
            c.str_list(b.get("components", ["main"]), f"{bkey}.components"), kp,
            c.string(b["script"], f"{bkey}.script") if "script" in b else None))
    s = c.mapping(spec["smoke"], f"{key}.smoke", {"python": "the interpreter, e.g. python3",
                                                 "pip": "a list of pinned requirements"},
                  {"pip_upgrade": "a pip requirement such as 'pip<21'",
                   "numpy_compat": "true or false", "wheel_deps": "true or false"})
    for flag in ("numpy_compat", "wheel_deps"):
        if not isinstance(s.get(flag, False), bool):
            c.fail(f"{key}.smoke.{flag}", f"is {s[flag]!r}", "true or false")
    smoke = SmokeSpec(c.string(s["python"], f"{key}.smoke.python"),
                      c.str_list(s["pip"], f"{key}.smoke.pip",
                                 "a list of pinned requirements like numpy==1.23.5"),
                      c.string(s["pip_upgrade"], f"{key}.smoke.pip_upgrade")
                      if "pip_upgrade" in s else None,
                      s.get("numpy_compat", False), s.get("wheel_deps", True))
    abi = None
    if "abi" in spec:
        a = c.mapping(spec["abi"], f"{key}.abi", {"glibc": "e.g. '2.31'",
                                                 "glibcxx": "e.g. '3.4.28'"})
        abi = Abi(c.string(a["glibc"], f"{key}.abi.glibc", ABI_RE, "a quoted version like '2.31'"),
                  c.string(a["glibcxx"], f"{key}.abi.glibcxx", ABI_RE,
                           "a quoted version like '3.4.28'"))
    return Distro(name, spec["codename"], spec["version_tag"], spec["multiarch"], base_spec,
                  smoke, abi)


def _parse_variant(c: _Checker, vname, vspec, distros, package,
                   sources) -> Iterable[tuple[Cell, str]]:
    key = f"variants.{vname}"
    if not isinstance(vname, str) or not VARIANT_RE.match(vname):
        c.fail(key, f"variant name {vname!r} is malformed", "cpu or cuXY such as cu90, cu112")
    c.mapping(vspec, key, {"cuda": "null for cpu, or 'X.Y'", "features": "a mapping",
                           "builds": "a list"},
              {"runtime_packages": "a mapping of soname to package (or driver)",
               "compile": "a mapping: preset, build_on, toolkit"})
    compile_spec = (_parse_compile(c, f"{key}.compile", vspec["compile"], distros)
                    if "compile" in vspec else None)
    runtime = vspec.get("runtime_packages", {})
    if not isinstance(runtime, dict) or not all(
            isinstance(k, str) and re.match(r"^lib[\w+.-]+\.so(\.\d+)*$", k) and
            isinstance(v, str) and v for k, v in runtime.items()):
        c.fail(f"{key}.runtime_packages", f"is {runtime!r}",
               "a mapping like libcudart.so.9.0: cuda-cudart-9-0 (or: driver)")
    cuda = vspec["cuda"]
    if vname == "cpu":
        if cuda is not None:
            c.fail(f"{key}.cuda", f"is {cuda!r}", "null for the cpu variant")
    else:
        if not isinstance(cuda, str) or not re.match(r"^\d+\.\d+$", cuda):
            c.fail(f"{key}.cuda", f"is {cuda!r}", "a quoted 'major.minor' string such as '9.0'")
        if vname != "cu" + cuda.replace(".", ""):
            c.fail(f"{key}.cuda", f"{cuda!r} does not match the variant name {vname}",
                   f"cuda '{vname[2:-1]}.{vname[-1]}' for {vname}")
    feats = vspec["features"]
    if not isinstance(feats, dict):
        c.fail(f"{key}.features", f"is {feats!r}", "a mapping of FEATURE_NAME: true/false")
    for fname, fvalue in feats.items():
        if not isinstance(fvalue, bool):
            c.fail(f"{key}.features.{fname}", f"is {fvalue!r}",
                   "true or false (what mx.runtime.Features() must report)")
    features = tuple(sorted(feats.items()))
    if not isinstance(vspec["builds"], list) or not vspec["builds"]:
        c.fail(f"{key}.builds", "is empty or not a list", "a list of builds")
    for i, build in enumerate(vspec["builds"]):
        bkey = f"{key}.builds[{i}]"
        c.mapping(build, bkey, {"mxnet": "a version string", "recipe": "wheel or compile",
                                "distros": "a list of distro names",
                                "wheel": "the official wheel's pin (harvested by the wheel "
                                         "recipe; every recipe's smoke client comes from it)"})
        mxnet = c.version(build["mxnet"], f"{bkey}.mxnet")
        if build["recipe"] not in RECIPES:
            c.fail(f"{bkey}.recipe", f"is {build['recipe']!r}", " or ".join(RECIPES))
        if build["recipe"] == "compile" and compile_spec is None:
            c.fail(f"{bkey}.recipe", f"is compile but {key} has no compile mapping",
                   f"a {key}.compile mapping (preset, ...) or recipe: wheel")
        w = c.mapping(build["wheel"], f"{bkey}.wheel",
                      {"name": "the PyPI project", "version": "the exact version",
                       "filename": "the wheel file name", "sha256": "64 lowercase hex"},
                      {"bundled": "a list of sonames bundled in the wheel"})
        wheel = WheelPin(c.string(w["name"], f"{bkey}.wheel.name"),
                         c.string(str(w["version"]), f"{bkey}.wheel.version"),
                         c.string(w["filename"], f"{bkey}.wheel.filename",
                                  re.compile(r"^[\w.+-]+\.whl$"), "a .whl file name"),
                         c.string(w["sha256"], f"{bkey}.wheel.sha256", SHA256_RE,
                                  "64 lowercase hex digits (sha256 of the wheel)"),
                         c.str_list(w.get("bundled", []), f"{bkey}.wheel.bundled"))
        dl = c.str_list(build["distros"], f"{bkey}.distros", "a list of distro names")
        for j, dname in enumerate(dl):
            if dname not in distros:
                c.fail(f"{bkey}.distros[{j}]", f"{dname!r} is not defined under distros",
                       "one of " + ", ".join(distros))
            yield (Cell(mxnet, vname, cuda, distros[dname], build["recipe"], wheel,
                        features, package, tuple(sorted(runtime.items())), compile_spec,
                        sources.get(mxnet)),
                   f"{bkey}.distros[{j}]")


# ---------------------------------------------------------------- selectors

def expand_braces(pattern: str) -> list[str]:
    """'1.9.1-cu11{2,7}-*' -> ['1.9.1-cu112-*', '1.9.1-cu117-*'] (nested braces too)."""
    open_at = pattern.find("{")
    if open_at < 0:
        return [pattern]
    depth, alts, cur = 0, [], ""
    for i in range(open_at + 1, len(pattern)):
        ch = pattern[i]
        if ch == "," and depth == 0:
            alts.append(cur)
            cur = ""
            continue
        if ch == "}" and depth == 0:
            alts.append(cur)
            head, tail = pattern[:open_at], pattern[i + 1:]
            return [x for alt in alts for x in expand_braces(head + alt + tail)]
        depth += (ch == "{") - (ch == "}")
        cur += ch
    return [pattern]  # unbalanced: taken literally


def _values(arg) -> list[str]:
    if arg is None or arg == "":
        return []
    items = arg if isinstance(arg, (list, tuple)) else [arg]
    return [v.strip() for item in items for v in str(item).split(",") if v.strip()]


def _cuda_matches(want: str, cuda: str | None) -> bool:
    if want in ("none", "cpu"):
        return cuda is None
    if cuda is None:
        return False
    return cuda == want or ("." not in want and cuda.split(".")[0] == want)


def select(cells: Iterable[Cell], variant=None, cuda=None, distro=None, mxnet=None,
           cell=None) -> list[Cell]:
    cells = list(cells)
    chosen = cells
    checks = [
        ("--variant", _values(variant), sorted({c.variant for c in cells}),
         lambda want, c: c.variant == want),
        ("--distro", _values(distro), sorted({c.distro.name for c in cells}),
         lambda want, c: c.distro.name == want),
        ("--mxnet", _values(mxnet), sorted({c.mxnet for c in cells}),
         lambda want, c: c.mxnet == want),
    ]
    for flag, wants, valid, match in checks:
        for want in wants:
            if want not in valid:
                raise SelectionError(f"{flag} {want!r} matches no cell of the matrix",
                                     f"use one of: {', '.join(valid)}")
        if wants:
            chosen = [c for c in chosen if any(match(w, c) for w in wants)]
    cudas = _values(cuda)
    if cudas:
        valid = sorted({c.cuda for c in cells if c.cuda})
        for want in cudas:
            if not re.match(r"^(\d+(\.\d+)?|none|cpu)$", want):
                raise SelectionError(f"--cuda {want!r} is malformed",
                                     "give a major version (9), major.minor (11.2) or none")
            if not any(_cuda_matches(want, c.cuda) for c in cells):
                raise SelectionError(f"--cuda {want!r} matches no cell of the matrix",
                                     f"use one of: {', '.join(valid) or '(no CUDA cells)'}, none")
        chosen = [c for c in chosen if any(_cuda_matches(w, c.cuda) for w in cudas)]
    globs = [p for g in _values_glob(cell) for p in expand_braces(g)]
    if globs:
        chosen = [c for c in chosen if any(fnmatch.fnmatchcase(c.id, g) for g in globs)]
    if not chosen:
        raise SelectionError(
            "the selection matches no cell",
            "valid cells are: " + ", ".join(c.id for c in cells) + " (see `invoke matrix`)")
    return chosen


def _values_glob(arg) -> list[str]:
    # Globs may contain commas inside braces: split on commas outside braces only.
    if not arg:
        return []
    out, depth, cur = [], 0, ""
    for ch in str(arg):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [p.strip() for p in out if p.strip()]
