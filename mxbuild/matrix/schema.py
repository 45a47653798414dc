"""Read matrix.yaml and check it against the schema; every complaint names the file, the
key path and the expected form (MatrixError).

Distros, packages, variants and their builds all come from the file: adding a distro or
a CUDA version needs no code change. Recipe names are checked against the plug-in table
(mxbuild/plugins.py); what a recipe takes of its own (a build's `<recipe>:` block, and the
keys it declares in Recipe.matrix_keys: `sources`, `variants.<v>.compile`, `jar`,
`jvm_build`) the recipe parses, with this module's checker (BuildScope, recipe_keys).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import yaml

from .. import plugins     # names of recipes and client kinds, no plug-in imported
from ..errors import MatrixError
from .model import (OUTCOMES, Abi, Architecture, BaseSpec, BootstrapSpec, Cell, CrossSpec,
                    Distro, KeyringPackage, KnownOutcome, Matrix, PackageSpec, Packaging,
                    SmokeSpec, Tolerance, UpstreamTestFile, UpstreamTests, WheelPin)

SCHEMA = 2
VARIANT_RE = re.compile(r"^(cpu|cu\d{2,3})$")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(\.post\d+)?$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
FPR_RE = re.compile(r"^[0-9A-F]{40}$")
IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*$")
SHA512_RE = re.compile(r"^[0-9a-f]{128}$")
ABI_RE = re.compile(r"^\d+(\.\d+)+$")
DRIVER = "driver"   # runtime_packages: provided by the host's NVIDIA driver
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]+$")
DISTRO_RE = re.compile(r"^[a-z]+[0-9][0-9.]*$")
ARCH_RE = re.compile(r"^[a-z][a-z0-9]+$")
# the safe loader, through libyaml when PyYAML has it (7x faster: every command reads the
# matrix); both build the same plain types
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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

    def by_version(self, value, key, form):
        """(version, entry, the entry's key) of a mapping of MXNet version to entries."""
        if not isinstance(value, dict):
            self.fail(key, f"is {value!r}", form)
        for version, entry in value.items():
            entry_key = f"{key}.{version}"
            self.version(version, entry_key)
            yield version, entry, entry_key

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
        doc = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "somewhere"
        raise MatrixError(path, "", f"is not valid YAML ({where})", "valid YAML")
    return parse(doc, path)


def parse(doc: Any, path: str = "matrix.yaml", checker: _Checker | None = None) -> Matrix:
    # checker: mxbuild.docsgen passes one that records every mapping's keys (the reference)
    c = checker or _Checker(path)
    if isinstance(doc, dict):  # x-… keys only hold YAML anchors
        doc = {k: v for k, v in doc.items() if not str(k).startswith("x-")}
    c.mapping(doc, "", {"schema": str(SCHEMA), "package": "a mapping",
                        "packages": "a mapping of package name to its files",
                        "architectures": "a mapping of Debian architecture to its triplet, "
                                         "machine, elf_machine and platform",
                        "distros": "a mapping", "variants": "a mapping"},
              {**recipe_keys("matrix"),
               "upstream_tests": "a mapping of mxnet version to the upstream tests to run"})
    if doc["schema"] != SCHEMA:
        c.fail("schema", f"is {doc['schema']!r}",
               f"{SCHEMA} (the only schema this mxbuild reads)")

    p = c.mapping(doc["package"], "package", {"revision": "a positive integer",
                                              "maintainer": "'Name <email>'"},
                  {"homepage": "a URL"})
    if not isinstance(p["revision"], int) or isinstance(p["revision"], bool) or p["revision"] < 1:
        c.fail("package.revision", f"is {p['revision']!r}", "a positive integer")
    c.string(p["maintainer"], "package.maintainer", re.compile(r"^[^<>]+ <[^<>@]+@[^<>]+>$"),
             "'Name <email>'")
    packaging = Packaging(p["revision"], p["maintainer"],
                          p.get("homepage", "https://mxnet.apache.org"))
    packages = _parse_packages(c, doc["packages"])
    arches = _parse_architectures(c, doc["architectures"])

    if not isinstance(doc["distros"], dict) or not doc["distros"]:
        c.fail("distros", "is empty or not a mapping", "a mapping of distro name to its settings")
    distros = {name: _parse_distro(c, name, spec, arches)
               for name, spec in doc["distros"].items()}
    codenames: dict[str, str] = {}
    for name, distro in distros.items():
        if distro.codename in codenames:
            c.fail(f"distros.{name}.codename", f"{distro.codename!r} is also the codename of "
                   f"distros.{codenames[distro.codename]}", "one distro per apt suite")
        codenames[distro.codename] = name


    if not isinstance(doc["variants"], dict) or not doc["variants"]:
        c.fail("variants", "is empty or not a mapping", "a mapping of variant name to its builds")
    cells: list[Cell] = []
    seen: dict[str, str] = {}
    memo: dict = {}     # what recipes parse once for every build (BuildScope.once)
    for vname, vspec in doc["variants"].items():
        for cell, key in _parse_variant(c, vname, vspec, _Catalog(doc, distros, arches,
                                                                  packaging, packages, memo)):
            if cell.id in seen:
                c.fail(key, f"cell {cell.id} is defined twice (first at {seen[cell.id]})",
                       "each (mxnet, variant, distro, architecture) once")
            seen[cell.id] = key
            cells.append(cell)
    upstream = _parse_upstream_tests(c, doc.get("upstream_tests", {}))
    cells = [replace(cell, upstream_tests=upstream.get(cell.mxnet)) if cell.mxnet in upstream
             else cell for cell in cells]
    return Matrix(path, packaging, packages, distros,
                  tuple(sorted(_with_client_wheels(cells), key=lambda x: x.id)), arches)


@dataclass(frozen=True)
class _Catalog:
    """What the builds of a variant refer to by name (parsed before the variants)."""
    doc: dict          # the whole document: the recipes' own top-level keys
    distros: dict[str, Distro]
    arches: dict[str, Architecture]
    packaging: Packaging
    packages: dict[str, PackageSpec]
    memo: dict


@dataclass(frozen=True)
class BuildScope:
    """What a recipe parses its inputs from (Recipe.parse_inputs): one build, its variant
    and the whole matrix, raw, with the key paths its complaints name."""
    doc: dict                   # the matrix document: its top-level keys
    variant: dict               # variants.<name>
    variant_key: str            # "variants.cpu"
    build: dict
    build_key: str              # "variants.cpu.builds[0]"
    mxnet: str
    distros: dict[str, Distro]
    memo: dict = field(compare=False, repr=False)

    def once(self, key: str, parse):
        """parse(), the first time `key` is asked for in this matrix: a top-level key is
        parsed (and checked) once, not once a build."""
        if key not in self.memo:
            self.memo[key] = parse()
        return self.memo[key]


def recipe_keys(level: str) -> dict[str, str]:
    """The keys the recipes own at `level` (matrix, variant, build), with their expected
    form: the recipes parse them (every recipe of the plug-in table is imported)."""
    out: dict[str, str] = {}
    for name in plugins.recipe_names():
        out.update(plugins.recipe(name).matrix_keys.get(level, {}))
    return out


def _parse_architectures(c: _Checker, spec) -> dict[str, Architecture]:
    if not isinstance(spec, dict) or not spec:
        c.fail("architectures", f"is {spec!r}", "a mapping of Debian architecture (amd64, "
               "arm64) to triplet, machine, elf_machine and platform; the first is primary")
    out: dict[str, Architecture] = {}
    for i, (name, entry) in enumerate(spec.items()):
        key = f"architectures.{name}"
        c.string(name, key, ARCH_RE, "a Debian architecture name such as amd64 or arm64")
        c.mapping(entry, key, {"triplet": "the multiarch triplet, e.g. aarch64-linux-gnu",
                               "machine": "uname -m, e.g. aarch64",
                               "elf_machine": "readelf -h's Machine, e.g. AArch64",
                               "platform": "the Docker platform, e.g. linux/arm64"},
                  {"variant": "the OCI platform variant, e.g. v8",
                   "qemu": "the binfmt_misc entry that runs it elsewhere, e.g. qemu-aarch64",
                   "cross": "a mapping: packages (the cross toolchain's packages)",
                   "smoke_tolerance": "a mapping: rtol, atol (how close its smoke's "
                                      "outputs must be to the amd64 reference)"})
        cross = None
        if "cross" in entry:
            x = c.mapping(entry["cross"], f"{key}.cross",
                          {"packages": "a list such as [crossbuild-essential-arm64]"})
            cross = CrossSpec(c.str_list(x["packages"], f"{key}.cross.packages"))
        out[name] = Architecture(
            name,
            c.string(entry["triplet"], f"{key}.triplet", re.compile(r"^[a-z0-9_]+-linux-gnu\w*$"),
                     "a multiarch triplet such as aarch64-linux-gnu"),
            c.string(entry["machine"], f"{key}.machine", re.compile(r"^[a-z0-9_]+$"),
                     "uname -m of the architecture, e.g. x86_64 or aarch64"),
            c.string(entry["elf_machine"], f"{key}.elf_machine"),
            c.string(entry["platform"], f"{key}.platform", re.compile(r"^linux/[a-z0-9]+$"),
                     "a Docker platform such as linux/arm64"),
            primary=(i == 0),
            variant=c.string(entry["variant"], f"{key}.variant") if "variant" in entry else None,
            qemu=(c.string(entry["qemu"], f"{key}.qemu", re.compile(r"^qemu-[a-z0-9_]+$"),
                           "a binfmt_misc entry name such as qemu-aarch64")
                  if "qemu" in entry else None),
            cross=cross,
            smoke_tolerance=(_parse_tolerance(c, f"{key}.smoke_tolerance",
                                              entry["smoke_tolerance"])
                             if "smoke_tolerance" in entry else Tolerance()))
    return out


def _parse_tolerance(c: _Checker, key: str, spec) -> Tolerance:
    c.mapping(spec, key, {"rtol": "a relative tolerance such as 1.0e-4",
                          "atol": "an absolute tolerance such as 1.0e-5"})
    values = {}
    for name in ("rtol", "atol"):
        value = spec[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not 0 <= value < 1:
            c.fail(f"{key}.{name}", f"is {value!r}", "a number in [0, 1) such as 1.0e-4 "
                   "(YAML needs the dot: 1e-4 is a string, 1.0e-4 a number)")
        values[name] = float(value)
    return Tolerance(**values)


def _parse_packages(c: _Checker, spec) -> dict[str, PackageSpec]:
    if not isinstance(spec, dict) or not spec:
        c.fail("packages", f"is {spec!r}", "a mapping of package name to its files, e.g. "
               "libmxnet: {files: [libmxnet.so, libmxnet/*], soname: libmxnet.so}")
    out: dict[str, PackageSpec] = {}
    for name, entry in spec.items():
        key = f"packages.{name}"
        c.string(name, key, PACKAGE_RE, "a Debian package name (lowercase letters, digits, "
                 ". + -)")
        c.mapping(entry, key, {"files": "globs of payload paths under /usr/lib/<multiarch>"},
                  {"soname": "the SONAME other packages link against",
                   "depends_on": "sibling packages it needs at the exact same version",
                   "lintian_overrides": "a mapping of lintian tag to its one-line reason",
                   "client": "the thin client kind that loads it, e.g. python",
                   "description": "a synopsis line, then the long description (else "
                                  "packaging/description/<name>.j2)"})
        files = c.str_list(entry["files"], f"{key}.files", "a list of globs such as "
                           "[libmxnet.so, libmxnet/*]")
        soname = (c.string(entry["soname"], f"{key}.soname", re.compile(r"^lib[\w+.-]+\.so"),
                           "a SONAME such as libmxnet.so") if "soname" in entry else None)
        depends = c.str_list(entry.get("depends_on", []), f"{key}.depends_on")
        for j, dep in enumerate(depends):
            if dep not in out:
                c.fail(f"{key}.depends_on[{j}]", f"{dep!r} is not a package defined above it",
                       "one of: " + ", ".join(out) if out else "a package listed before it")
        overrides = entry.get("lintian_overrides", {})
        if not isinstance(overrides, dict) or not all(
                isinstance(t, str) and isinstance(r, str) and r and "\n" not in r
                for t, r in overrides.items()):
            c.fail(f"{key}.lintian_overrides", f"is {overrides!r}",
                   "a mapping like 'shared-library-lacks-version *': one-line reason")
        client = entry.get("client")
        if client is not None:
            if client not in plugins.client_names():
                c.fail(f"{key}.client", f"is {client!r}",
                       "one of " + ", ".join(plugins.client_names()))
        description = None
        if "description" in entry:
            text = c.string(entry["description"], f"{key}.description")
            description = tuple(line.rstrip() for line in text.strip().splitlines())
        out[name] = PackageSpec(name, files, soname, depends, tuple(overrides.items()), client,
                                description)
    return out


def _with_client_wheels(cells: list[Cell]) -> list[Cell]:
    canonical: dict[str, WheelPin] = {}
    for cell in sorted(cells, key=lambda c: (c.variant != "cpu", c.variant, c.distro.name)):
        canonical.setdefault(cell.mxnet, cell.official_wheel)
    return [replace(cell, client_wheel=canonical[cell.mxnet]) for cell in cells]


REL_PATH_RE = re.compile(r"^(?!/)(?!.*(^|/)\.\.(/|$))[\w.+/-]+$")
DEFAULT_FILE_TIMEOUT = 1800
DEFAULT_KNOWN_OUTCOMES = ("failed", "error")


def _parse_upstream_tests(c: _Checker, spec) -> dict[str, UpstreamTests]:
    out = {}
    for version, entry, key in c.by_version(spec, "upstream_tests",
                                            "a mapping of mxnet version to its tests"):
        c.mapping(entry, key, {"ship": "the files and folders of the source tree the tests "
                                       "need, e.g. [pytest.ini, tests/python/unittest]",
                               "files": "a list of test files (path, select, timeout)"},
                  {"pip": "the tests' own requirements, pinned (nose==1.3.7…)",
                   "apt": "distro packages the official wheel's library needs (libgomp1…)",
                   "timeout": "seconds per file (default 1800)",
                   "known": "a list of known outcomes: test, outcomes, reason"})
        rel = "a path relative to the top of the source tree, without '..'"
        ship = c.str_list(entry["ship"], f"{key}.ship", "a list of " + rel + "s")
        for j, item in enumerate(ship):
            c.string(item, f"{key}.ship[{j}]", REL_PATH_RE, rel)
        default = _seconds(c, entry.get("timeout", DEFAULT_FILE_TIMEOUT), f"{key}.timeout")
        if not isinstance(entry["files"], list) or not entry["files"]:
            c.fail(f"{key}.files", f"is {entry['files']!r}", "a non-empty list of test files")
        files = []
        for j, item in enumerate(entry["files"]):
            fkey = f"{key}.files[{j}]"
            f = c.mapping({"path": item} if isinstance(item, str) else item, fkey,
                          {"path": rel}, {"select": "a pytest -k expression",
                                          "timeout": "seconds for the whole file"})
            path = c.string(f["path"], f"{fkey}.path", REL_PATH_RE, rel)
            if not any(path == s or path.startswith(s.rstrip("/") + "/") for s in ship):
                c.fail(f"{fkey}.path", f"{path!r} is not in any folder of {key}.ship",
                       "add its folder to ship")
            files.append(UpstreamTestFile(
                path, c.string(f["select"], f"{fkey}.select") if "select" in f else None,
                _seconds(c, f.get("timeout", default), f"{fkey}.timeout")))
        known = []
        raw_known = entry.get("known", [])
        if not isinstance(raw_known, list):
            c.fail(f"{key}.known", f"is {raw_known!r}", "a list of {test, outcomes, reason}")
        for j, item in enumerate(raw_known):
            kkey = f"{key}.known[{j}]"
            k = c.mapping(item, kkey, {"test": "a pytest node id or a glob of node ids",
                                       "reason": "why this outcome is expected here"},
                          {"outcomes": "the outcomes it excuses (default [failed, error])"})
            outcomes = c.str_list(k.get("outcomes", list(DEFAULT_KNOWN_OUTCOMES)),
                                  f"{kkey}.outcomes", "a list of " + ", ".join(OUTCOMES))
            for o in outcomes:
                if o not in OUTCOMES:
                    c.fail(f"{kkey}.outcomes", f"{o!r} is not an outcome",
                           "some of " + ", ".join(OUTCOMES))
            known.append(KnownOutcome(c.string(k["test"], f"{kkey}.test"), outcomes,
                                      c.string(k["reason"], f"{kkey}.reason")))
        apt = c.str_list(entry.get("apt", []), f"{key}.apt", "a list of package names")
        for j, name in enumerate(apt):
            c.string(name, f"{key}.apt[{j}]", PACKAGE_RE, "a Debian package name")
        out[version] = UpstreamTests(version, ship, tuple(files),
                                     c.str_list(entry.get("pip", []), f"{key}.pip"),
                                     tuple(known), apt)
    return out


def _seconds(c: _Checker, value, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        c.fail(key, f"is {value!r}", "a positive number of seconds")
    return value


def _parse_distro(c: _Checker, name, spec, arches: dict[str, Architecture]) -> Distro:
    key = f"distros.{name}"
    c.string(name, key, DISTRO_RE, "a distro name users type: letters then the release "
             "number, e.g. debian12 or ubuntu20")
    if isinstance(spec, dict) and "multiarch" in spec:
        c.fail(f"{key}.multiarch", "is no longer a distro setting",
               "nothing: the triplet comes from the cell's architecture "
               "(architectures.<arch>.triplet); remove the key")
    c.mapping(spec, key, {"codename": "the apt suite", "family": "debian or ubuntu",
                          "version_tag": "e.g. deb12",
                          "base": "a mapping", "smoke": "a mapping"},
              {"abi": "glibc/glibcxx versions the distro provides"})
    c.string(spec["codename"], f"{key}.codename", re.compile(r"^[a-z]+$"),
             "the release's apt suite (codename), e.g. bookworm or focal")
    c.string(spec["family"], f"{key}.family", re.compile(r"^[a-z]+$"),
             "the distribution family, e.g. debian or ubuntu")
    c.string(spec["version_tag"], f"{key}.version_tag", re.compile(r"^[a-z0-9.]+$"),
             "lowercase letters, digits and dots, e.g. deb12 or ubuntu16.04")
    base = c.mapping(spec["base"], f"{key}.base", {}, {"image": "a registry image name:tag",
                                                      "bootstrap": "a mapping"})
    if ("image" in base) == ("bootstrap" in base):
        c.fail(f"{key}.base", "needs exactly one of image / bootstrap",
               "either `image: name:tag` (its digest goes to pins.lock) or a `bootstrap:` "
               "mapping")
    if "image" in base:
        c.string(base["image"], f"{key}.base.image", IMAGE_RE,
                 "a registry image name:tag; its digest belongs in pins.lock (invoke lock)")
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
        primary_mirror, arch_mirrors = _parse_mirrors(c, f"{bkey}.mirror", b["mirror"], arches)
        c.string(b["key_fingerprint"], f"{bkey}.key_fingerprint", FPR_RE,
                 "a full OpenPGP fingerprint: 40 uppercase hex digits")
        base_spec = BaseSpec(bootstrap=BootstrapSpec(
            c.string(b["suite"], f"{bkey}.suite"), primary_mirror,
            c.string(b["keyring"], f"{bkey}.keyring"), b["key_fingerprint"],
            c.str_list(b.get("components", ["main"]), f"{bkey}.components"), kp,
            c.string(b["script"], f"{bkey}.script") if "script" in b else None,
            arch_mirrors))
    s = c.mapping(spec["smoke"], f"{key}.smoke", {"python": "the interpreter, e.g. python3",
                                                 "pip": "a list of pinned requirements"},
                  {"pip_upgrade": "a pip requirement such as 'pip<21'",
                   "numpy_compat": "true or false", "wheel_deps": "true or false",
                   "jdk": "the distro's JRE package, e.g. openjdk-17-jre-headless"})
    for flag in ("numpy_compat", "wheel_deps"):
        if not isinstance(s.get(flag, False), bool):
            c.fail(f"{key}.smoke.{flag}", f"is {s[flag]!r}", "true or false")
    smoke = SmokeSpec(c.string(s["python"], f"{key}.smoke.python"),
                      c.str_list(s["pip"], f"{key}.smoke.pip",
                                 "a list of pinned requirements like numpy==1.23.5"),
                      c.string(s["pip_upgrade"], f"{key}.smoke.pip_upgrade")
                      if "pip_upgrade" in s else None,
                      s.get("numpy_compat", False), s.get("wheel_deps", True),
                      c.string(s["jdk"], f"{key}.smoke.jdk", re.compile(r"^[a-z0-9.+-]+$"),
                               "a Debian package name such as openjdk-17-jre-headless")
                      if "jdk" in s else "default-jre-headless")
    abi = None
    if "abi" in spec:
        a = c.mapping(spec["abi"], f"{key}.abi", {"glibc": "e.g. '2.31'",
                                                 "glibcxx": "e.g. '3.4.28'"})
        abi = Abi(c.string(a["glibc"], f"{key}.abi.glibc", ABI_RE, "a quoted version like '2.31'"),
                  c.string(a["glibcxx"], f"{key}.abi.glibcxx", ABI_RE,
                           "a quoted version like '3.4.28'"))
    return Distro(name, spec["codename"], spec["family"], spec["version_tag"],
                  base_spec, smoke, abi)


def _parse_mirrors(c: _Checker, key: str, value,
                   arches: dict[str, Architecture]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """`mirror:` is one URL serving every architecture (Debian's archive), or a mapping of
    architecture to URL (Ubuntu: archive.ubuntu.com for amd64, ports.ubuntu.com for
    arm64). Returns the primary architecture's URL and every (architecture, URL)."""
    url_re, form = re.compile(r"^https?://"), "an http(s) URL"
    if isinstance(value, str):
        c.string(value, key, url_re, form)
        return value, tuple((a, value) for a in arches)
    if not isinstance(value, dict) or not value:
        c.fail(key, f"is {value!r}", "an http(s) URL, or a mapping of architecture to URL "
               "(e.g. {amd64: http://archive.ubuntu.com/ubuntu, arm64: "
               "http://ports.ubuntu.com/ubuntu-ports})")
    for arch, url in value.items():
        if arch not in arches:
            c.fail(f"{key}.{arch}", "is not an architecture of the matrix",
                   "one of " + ", ".join(arches))
        c.string(url, f"{key}.{arch}", url_re, form)
    primary = next(iter(arches))
    if primary not in value:
        c.fail(key, f"names no archive for {primary}, the primary architecture",
               f"add {primary}: URL")
    return value[primary], tuple((a, value[a]) for a in arches if a in value)


# the keys of a build besides `recipe`'s own block (a recipe of one of these names has none)
BUILD_KEYS = frozenset({"mxnet", "recipe", "distros", "wheel", "packages", "architectures",
                        "features", "smoke_tolerance"})


def _parse_variant(c: _Checker, vname, vspec, cat: _Catalog) -> Iterable[tuple[Cell, str]]:
    distros = cat.distros
    key = f"variants.{vname}"
    if not isinstance(vname, str) or not VARIANT_RE.match(vname):
        c.fail(key, f"variant name {vname!r} is malformed", "cpu or cuXY such as cu90, cu112")
    c.mapping(vspec, key, {"cuda": "null for cpu, or 'X.Y'", "features": "a mapping",
                           "builds": "a list"},
              {"runtime_packages": "a mapping of soname to package (or driver)",
               **recipe_keys("variant")})
    runtime, alternatives = _parse_runtime(c, f"{key}.runtime_packages",
                                           vspec.get("runtime_packages", {}), distros)
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
    if not isinstance(vspec["builds"], list) or not vspec["builds"]:
        c.fail(f"{key}.builds", "is empty or not a list", "a list of builds")
    known = plugins.recipe_names()
    owned = recipe_keys("build")
    for i, build in enumerate(vspec["builds"]):
        bkey = f"{key}.builds[{i}]"
        required = {"mxnet": "a version string",
                    "recipe": "one of " + ", ".join(known),
                    "distros": "a list of distro names",
                    "wheel": "the official wheel's pin (harvested by the wheel "
                             "recipe; every recipe's smoke client comes from it)"}
        # a recipe's own block: the key of its name (unless that is a build key already)
        own = build.get("recipe") if isinstance(build, dict) else None
        own = own if isinstance(own, str) and own in known and own not in required \
            and own not in BUILD_KEYS and own not in owned else None
        c.mapping(build, bkey, required,
                  {**({own: f"the {own} recipe's own settings"} if own else {}),
                   "packages": "the packages the build ships (default: the first of "
                               "`packages`)",
                   "architectures": "the architectures it builds (default: the primary "
                                    "one, " + next(iter(cat.arches)) + ")",
                   "features": "what Features() reports for these cells where it differs "
                               "from the variant's (e.g. MKLDNN: false on arm64)",
                   **owned,
                   "smoke_tolerance": "rtol, atol for its smoke's comparison with the "
                                      "amd64 reference (default: the architecture's)"})
        mxnet = c.version(build["mxnet"], f"{bkey}.mxnet")
        if build["recipe"] not in known:
            c.fail(f"{bkey}.recipe", f"is {build['recipe']!r}", "one of " + ", ".join(known))
        recipe_config = (plugins.recipe(own).parse_config(build[own], f"{bkey}.{own}", c)
                         if own and own in build else None)
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
        shipped = _shipped_packages(c, f"{bkey}.packages", build, cat.packages)
        inputs = _recipe_inputs(c, BuildScope(cat.doc, vspec, key, build, bkey, mxnet,
                                              distros, cat.memo))
        features = _build_features(c, f"{bkey}.features", feats, build.get("features", {}))
        tolerance = (_parse_tolerance(c, f"{bkey}.smoke_tolerance", build["smoke_tolerance"])
                     if "smoke_tolerance" in build else None)
        arch_names = c.str_list(build.get("architectures", [next(iter(cat.arches))]),
                                f"{bkey}.architectures", "a list of architectures such as "
                                "[amd64, arm64]")
        for j, aname in enumerate(arch_names):
            if aname not in cat.arches:
                c.fail(f"{bkey}.architectures[{j}]", f"{aname!r} is not defined under "
                       "architectures", "one of " + ", ".join(cat.arches))
        dl = c.str_list(build["distros"], f"{bkey}.distros", "a list of distro names")
        for j, dname in enumerate(dl):
            if dname not in distros:
                c.fail(f"{bkey}.distros[{j}]", f"{dname!r} is not defined under distros",
                       "one of " + ", ".join(distros))
            for aname in arch_names:
                arch = cat.arches[aname]
                bootstrap = distros[dname].base.bootstrap
                if bootstrap is not None and bootstrap.mirror_for(aname) is None:
                    c.fail(f"distros.{dname}.base.bootstrap.mirror",
                           f"names no archive for {aname} ({bkey} builds {dname} for it)",
                           f"add {aname}: URL of an archive that serves {aname}")
                cell = Cell(mxnet, vname, cuda, distros[dname], arch, build["recipe"], wheel,
                            features, cat.packaging, shipped, tuple(sorted(runtime.items())),
                            tolerance=tolerance,
                            runtime_alternatives=tuple(sorted(
                                (so, alts[dname]) for so, alts in alternatives.items()
                                if dname in alts)), recipe_config=recipe_config,
                            inputs=inputs)
                # the recipe itself judges the cell (its module imported on first use)
                unfit = plugins.recipe(cell.recipe).unfit(cell)
                if unfit:
                    c.fail(f"{bkey}.recipe", f"is {cell.recipe} but {unfit[0]}", unfit[1])
                yield cell, f"{bkey}.distros[{j}]"
    built_on = {d for b in vspec["builds"] for d in b["distros"]}
    for so, alts in alternatives.items():
        for dname in alts:
            if dname not in built_on:
                c.fail(f"{key}.runtime_packages.{so}.distro.{dname}",
                       f"{vname} has no cell on {dname}",
                       "name the alternatives of distros this variant builds for: "
                       + ", ".join(sorted(built_on)))


def _recipe_inputs(c: _Checker, scope: BuildScope) -> tuple[tuple[str, object], ...]:
    """What every recipe makes of its own keys for the cells of one build, by input name
    (recipes sharing an input name parse once)."""
    out: dict[str, object] = {}
    for name in plugins.recipe_names():
        recipe = plugins.recipe(name)
        if recipe.input_name not in out:
            out[recipe.input_name] = recipe.parse_inputs(scope, c)
    return tuple((n, v) for n, v in out.items() if v is not None)


def _build_features(c: _Checker, key: str, variant_features: dict, override) -> tuple:
    """The variant's features with a build's overrides applied."""
    if not isinstance(override, dict):
        c.fail(key, f"is {override!r}", "a mapping of FEATURE_NAME: true/false")
    for fname, fvalue in override.items():
        if fname not in variant_features:
            c.fail(f"{key}.{fname}", "is not a feature of the variant",
                   "one of " + ", ".join(variant_features))
        if not isinstance(fvalue, bool):
            c.fail(f"{key}.{fname}", f"is {fvalue!r}", "true or false")
    return tuple(sorted({**variant_features, **override}.items()))


def _parse_runtime(c: _Checker, key: str, spec, distros) -> tuple[dict[str, str],
                                                                   dict[str, dict[str, str]]]:
    """runtime_packages: soname -> NVIDIA's repository package (or `driver`), or a mapping
    {package: NVIDIA's name, distro: {DISTRO: the distro's own package}} when a distro's
    archive provides that soname too: the .deb of a cell on DISTRO then depends on
    `NVIDIA-name | distro-name`. Returns (soname -> NVIDIA name, soname -> {distro: name})."""
    form = ("a mapping like libcudart.so.9.0: cuda-cudart-9-0 (or: driver), or "
            "libcudart.so.11.0: {package: cuda-cudart-11-7, distro: {ubuntu22: libcudart11.0}}")
    if not isinstance(spec, dict):
        c.fail(key, f"is {spec!r}", form)
    packages, alternatives = {}, {}
    for so, value in spec.items():
        if not isinstance(so, str) or not re.match(r"^lib[\w+.-]+\.so(\.\d+)*$", so):
            c.fail(key, f"{so!r} is not a soname", form)
        if isinstance(value, str):
            packages[so] = c.string(value, f"{key}.{so}", PACKAGE_RE, form)
            continue
        c.mapping(value, f"{key}.{so}", {"package": "NVIDIA's repository package",
                                         "distro": "a mapping of distro name to the "
                                                   "distro's package providing the soname"})
        packages[so] = c.string(value["package"], f"{key}.{so}.package", PACKAGE_RE,
                                "a Debian package name")
        if packages[so] == DRIVER:
            c.fail(f"{key}.{so}.package", "is driver", "the driver has no package "
                   "alternatives: write `driver` alone")
        alts = value["distro"]
        if not isinstance(alts, dict) or not alts:
            c.fail(f"{key}.{so}.distro", f"is {alts!r}", "a mapping like {ubuntu22: libcudart11.0}")
        for dname, pkg in alts.items():
            if dname not in distros:
                c.fail(f"{key}.{so}.distro.{dname}", "is not defined under distros",
                       "one of " + ", ".join(distros))
            c.string(pkg, f"{key}.{so}.distro.{dname}", PACKAGE_RE, "a Debian package name")
        alternatives[so] = dict(alts)
    return packages, alternatives


def _shipped_packages(c: _Checker, key: str, build: dict,
                      packages: dict[str, PackageSpec]) -> tuple[PackageSpec, ...]:
    names = c.str_list(build.get("packages", [next(iter(packages))]), key,
                       "a list of package names defined under packages")
    for j, name in enumerate(names):
        if name not in packages:
            c.fail(f"{key}[{j}]", f"{name!r} is not defined under packages",
                   "one of " + ", ".join(packages))
        for dep in packages[name].depends_on:
            if dep not in names:
                c.fail(key, f"{name} depends on {dep}, which the build does not ship",
                       f"add {dep} to the list")
    return tuple(packages[name] for name in names)
