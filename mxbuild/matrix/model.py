"""What matrix.yaml describes, as frozen dataclasses: distros, pins, packages and cells.

A cell is one point of the matrix: (mxnet version, variant, distro, architecture). Its
id, e.g. ``1.9.1-cpu-debian12`` (amd64, the primary architecture) or
``1.9.1-cpu-debian12-arm64``, keys everything downstream.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from typing import Any

STAGING = "staging"


@dataclass(frozen=True)
class CrossSpec:
    """How the build machines (amd64) compile for an architecture they cannot run natively:
    Debian's cross toolchain and the distro's multiarch `:<arch>` development packages."""
    packages: tuple[str, ...]            # e.g. crossbuild-essential-arm64


@dataclass(frozen=True)
class Tolerance:
    """How close the smoke's outputs must be to the reference outputs of the official
    amd64 wheel: |got - want| <= atol + rtol * |want| (numpy.allclose). Another
    architecture's BLAS/convolution kernels round differently."""
    rtol: float = 1e-5
    atol: float = 1e-6


@dataclass(frozen=True)
class Architecture:
    """A Debian architecture the packages are built for. Everything Debian derives from it
    (multiarch triplet, `Architecture:`, `binary-<arch>`, pool names) is computed from
    this, never written per distro."""
    name: str                     # Debian's name: amd64, arm64
    triplet: str                  # multiarch triplet: /usr/lib/<triplet>
    machine: str                  # `uname -m`, wheel platform tags: x86_64, aarch64
    elf_machine: str              # readelf -h "Machine:" of its binaries
    platform: str                 # Docker/OCI platform: linux/amd64, linux/arm64
    primary: bool = False         # the first of matrix.yaml: its cell ids carry no suffix
    variant: str | None = None    # OCI platform variant (arm64: v8)
    qemu: str | None = None       # the binfmt_misc entry that runs it on another host
    cross: CrossSpec | None = None   # compiled on amd64 machines with a cross toolchain
    smoke_tolerance: Tolerance = Tolerance()   # its cells' smoke (a build may override)

    @property
    def suffix(self) -> str:
        """What a cell id of this architecture ends with ('' for the primary one)."""
        return "" if self.primary else f"-{self.name}"


@dataclass(frozen=True)
class Packaging:
    """What every package of every cell shares."""
    revision: int          # Debian packaging revision: bumped when a .deb's bytes change
    maintainer: str
    homepage: str


@dataclass(frozen=True)
class PackageSpec:
    """One binary package a cell can ship. Its files are payload paths (relative to
    /usr/lib/<multiarch>/), matched by glob: the recipe's payload decides the bytes, this
    decides which package holds them."""
    name: str
    files: tuple[str, ...]              # globs, e.g. ("libmxnet.so", "libmxnet/*")
    soname: str | None = None           # the library other packages link: DEBIAN/symbols
    depends_on: tuple[str, ...] = ()    # sibling packages of the cell, at the exact version
    # lintian findings inherent to the package: (tag pattern, one-line reason)
    lintian_overrides: tuple[tuple[str, str], ...] = ()
    client: str | None = None           # the thin client that uses it (mxbuild.thin kinds)
    # Description: synopsis line, then the long text; None: packaging/description/<name>.j2
    description: tuple[str, ...] | None = None

    def holds(self, rel: str) -> bool:
        return any(fnmatch.fnmatchcase(rel, pattern) for pattern in self.files)


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
    mirror: str                       # the archive of the primary architecture (amd64)
    keyring: str                      # a host path, or the path inside keyring_package
    key_fingerprint: str
    components: tuple[str, ...]
    keyring_package: KeyringPackage | None = None
    script: str | None = None         # debootstrap script when the host lacks the suite's
    # (architecture, archive) for every architecture the suite is bootstrapped for: Ubuntu
    # serves arm64 from ports.ubuntu.com; empty: `mirror` serves every architecture
    arch_mirrors: tuple[tuple[str, str], ...] = ()

    def mirror_for(self, arch: str) -> str | None:
        """The archive that serves `arch`, or None if matrix.yaml declares none."""
        if not self.arch_mirrors:
            return self.mirror
        return dict(self.arch_mirrors).get(arch)


@dataclass(frozen=True)
class BaseSpec:
    """Either a registry image (its digest lives in the pins file), or a bootstrap."""
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
    jdk: str = "default-jre-headless"   # the distro's JRE the JVM smoke runs on


@dataclass(frozen=True)
class Abi:
    """The newest symbol versions a distro's libc6 and libstdc++6 provide."""
    glibc: str        # e.g. "2.31"
    glibcxx: str      # e.g. "3.4.28"


@dataclass(frozen=True)
class Distro:
    name: str                 # what users type: debian12, ubuntu20…
    codename: str             # the apt suite: bookworm, focal…
    family: str               # debian | ubuntu
    version_tag: str          # in package versions: 1.9.1-3~deb12
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

    def runs_on(self, machine: str) -> bool:
        """Whether its natives run on `machine` (uname -m): its platform tag says so."""
        return self.filename.endswith(f"_{machine}.whl")


# What an upstream test can come to (mxbuild/upstream/outcomes.py decides which).
OUTCOMES = ("passed", "skipped", "xfailed", "xpassed", "failed", "error", "crashed",
            "timeout", "not-run")


@dataclass(frozen=True)
class UpstreamTestFile:
    """One of MXNet's own test files the upstream stage runs, in its own pytest process."""
    path: str                      # relative to the top of the source tree
    select: str | None = None      # pytest -k expression
    timeout: int = 1800            # seconds for the whole file, resumes after crashes included


@dataclass(frozen=True)
class KnownOutcome:
    """A test outcome that does not fail the upstream stage, with the reason (a failure
    that is environmental on this machine, a stochastic test). Listed in the report."""
    test: str                      # pytest node id, or a glob of node ids
    outcomes: tuple[str, ...]      # the outcomes it excuses (a crash is never implied)
    reason: str

    def matches(self, test: str, outcome: str) -> bool:
        return outcome in self.outcomes and (test == self.test or
                                             fnmatch.fnmatchcase(test, self.test))


@dataclass(frozen=True)
class UpstreamTests:
    """MXNet's own Python tests for a version (matrix `upstream_tests:`): what is copied
    from the source tree, which files run, what the test container needs besides the
    client's requirements, and the known outcomes."""
    version: str
    ship: tuple[str, ...]                 # files/folders of the source tree the tests need
    files: tuple[UpstreamTestFile, ...]
    pip: tuple[str, ...] = ()             # requirements of the tests (pinned)
    known: tuple[KnownOutcome, ...] = ()
    # distro packages the official wheel's libmxnet.so needs (what its .deb would Depend
    # on), for the reference run; installed in the test image for both runs
    apt: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cell:
    mxnet: str
    variant: str
    cuda: str | None
    distro: Distro
    arch: Architecture
    recipe: str
    # the official wheel of the build (matrix `wheel:`): the smoke's reference outputs and
    # client, the upstream stage's comparison; the wheel recipe harvests it
    official_wheel: WheelPin | None
    features: tuple[tuple[str, bool], ...]
    packaging: Packaging
    packages: tuple[PackageSpec, ...]    # what the cell ships; the first holds libmxnet.so
    # NEEDED soname -> package providing it on the host ("driver": the NVIDIA driver)
    runtime_packages: tuple[tuple[str, str], ...] = ()
    # The official wheel the thin client of this MXNet version is made from: the same for
    # every cell of the version (the cpu build's, else the first GPU variant's).
    client_wheel: WheelPin | None = None
    tolerance: Tolerance | None = None   # the build's smoke_tolerance (None: the arch's)
    # MXNet's own tests, run when the cell's libmxnet.so is built from source
    upstream_tests: UpstreamTests | None = None
    # soname -> this distro's own package providing it: an alternative in Depends
    runtime_alternatives: tuple[tuple[str, str], ...] = ()
    # the cell's recipe's own block of the build (`builds[i].<recipe>`), as the recipe
    # parsed it (Recipe.parse_config: a frozen value); None: the build has none
    recipe_config: object = None
    # what each recipe made of the matrix keys it owns (Recipe.matrix_keys) for this cell,
    # by the recipe's input_name (a frozen value each; Recipe.parse_inputs): recipes other
    # than the cell's own too, as --recipe may choose them
    inputs: tuple[tuple[str, object], ...] = ()

    def input_of(self, name: str) -> object:
        """The inputs recipe `name` parsed for this cell (Recipe.input_name), or None."""
        return dict(self.inputs).get(name)

    def with_input(self, name: str, value: object) -> "Cell":
        """This cell with recipe `name`'s inputs replaced (None: removed)."""
        rest = tuple((n, v) for n, v in self.inputs if n != name)
        return replace(self, inputs=rest + (((name, value),) if value is not None else ()))

    @property
    def smoke_tolerance(self) -> Tolerance:
        """How close the smoke's outputs must be to the amd64 reference outputs."""
        return self.tolerance or self.arch.smoke_tolerance

    @property
    def id(self) -> str:
        return f"{self.mxnet}-{self.variant}-{self.distro.name}{self.arch.suffix}"

    @property
    def multiarch(self) -> str:
        """The multiarch triplet: the package's files go to /usr/lib/<multiarch>/."""
        return self.arch.triplet

    @property
    def codename(self) -> str:
        return self.distro.codename

    @property
    def component(self) -> str:
        return self.variant

    @property
    def package(self) -> PackageSpec:
        """The package that holds libmxnet.so (the Python client's native stack)."""
        return self.packages[0]

    @property
    def package_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.packages)

    def suite(self, staging: bool = False) -> str:
        """The apt suite it is published to: its codename, or `<codename>-staging` where
        release CI publishes first (promoted with `invoke repo.promote`)."""
        return f"{self.codename}-{STAGING}" if staging else self.codename

    @property
    def deb_version(self) -> str:
        """Upstream version + packaging revision + distro tag, e.g. 1.9.1-1~deb12."""
        return deb_version(self.mxnet, self.packaging.revision, self.distro.version_tag)

    def runtime_depends(self) -> dict[str, str]:
        """soname -> the Depends entry providing it on the host (NVIDIA's package, or
        `NVIDIA's | the distro's` where the distro has one); the driver's sonames are
        left out (the host's driver provides them, no package)."""
        alternatives = dict(self.runtime_alternatives)
        return {so: f"{pkg} | {alternatives[so]}" if so in alternatives else pkg
                for so, pkg in self.runtime_packages if pkg != "driver"}

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id, "mxnet": self.mxnet, "variant": self.variant,
            "cuda": self.cuda, "distro": self.distro.name, "codename": self.codename,
            "arch": self.arch.name, "recipe": self.recipe, "package": self.package.name,
            "packages": list(self.package_names), "version": self.deb_version,
        }

    def build_info(self, package: PackageSpec) -> dict[str, Any]:
        """The cell as buildinfo.json of `package` records it (its keys are part of the
        published bytes: never add one without bumping the packaging revision)."""
        return {
            "id": self.id, "mxnet": self.mxnet, "variant": self.variant,
            "cuda": self.cuda, "distro": self.distro.name, "codename": self.codename,
            "recipe": self.recipe, "package": package.name, "version": self.deb_version,
            # amd64's buildinfo.json predates the axis: its bytes stay as they were
            **({} if self.arch.primary else {"arch": self.arch.name}),
        }


def deb_version(upstream: str, revision: int, distro_tag: str) -> str:
    # "~" sorts before anything, so a later plain "-1" upload still supersedes ours.
    return f"{upstream}-{revision}~{distro_tag}"


@dataclass(frozen=True)
class Matrix:
    path: str
    packaging: Packaging
    packages: dict[str, PackageSpec] = field(hash=False)
    distros: dict[str, Distro] = field(hash=False)
    cells: tuple[Cell, ...]
    architectures: dict[str, Architecture] = field(hash=False, default_factory=dict)

    def select(self, variant=None, cuda=None, distro=None, mxnet=None, cell=None,
               arch=None) -> list[Cell]:
        from .selectors import select
        return select(self.cells, variant=variant, cuda=cuda, distro=distro, mxnet=mxnet,
                      cell=cell, arch=arch, known_arches=tuple(self.architectures))
