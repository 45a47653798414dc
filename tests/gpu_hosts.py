"""GPU packages installed and loaded on a host without a GPU — a check harness. Nothing
here is ever published: NVIDIA's libraries only ever enter throwaway containers.

For a GPU cell, a fresh container of its distro (the smoke client image: the plain distro
plus the Python client's dependencies) gets the CUDA runtime from sources reachable here,
soname by soname:
  - the distro's own package, where matrix.yaml declares it as the Depends alternative
    (`runtime_packages`: `NVIDIA's | the distro's`) — apt chooses it itself;
  - else NVIDIA's CUDA 11 runtime wheels from PyPI (pinned below; CUDA 11.8, cuDNN 8.9,
    NCCL 2.21), serving the CUDA 11 cells by minor-version compatibility: their libraries
    (downloaded on the host, unpacked once) are bind-mounted read-only and a local package
    built in the container, `mxbuild-check-cuda-runtime`, Provides the NVIDIA package names
    whose sonames they serve;
  - libcuda.so.1 from the distro's driver package (Ubuntu's libnvidia-compute-NNN,
    restricted/-updates; Debian's libcuda1, non-free): loadable without a GPU.
Then `apt-get install libmxnet` (apt resolves every Depends, or the check says which it
could not and installs the package with --force-depends), the thin client from the
repository's index and the smoke suite (tests/smoke): the library loads, Features equal
matrix.yaml's, CPU inference matches the host's reference outputs, GPU checks "skipped: no
GPU". Where no source serves a soname (CUDA 9/10 cells, cu110/cu111's nvrtc), the suite's
dependency-closure check proves exactly those sonames are missing, each with its reason.
"""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from docker.types import Mount

from mxbuild.matrix import Cell, WheelPin

# NVIDIA's CUDA 11 runtime wheels on PyPI (the newest of each for CUDA 11; the -cu110 …
# -cu116 projects on PyPI are placeholders that install nothing).
PYPI_CUDA11 = (
    WheelPin("nvidia-cuda-runtime-cu11", "11.8.89",
             "nvidia_cuda_runtime_cu11-11.8.89-py3-none-manylinux2014_x86_64.whl",
             "92d04069a987e1fbc9213f8376d265df0f7bb42617d44f5eda1f496acea7f2d1", ()),
    WheelPin("nvidia-cublas-cu11", "11.11.3.6",
             "nvidia_cublas_cu11-11.11.3.6-py3-none-manylinux2014_x86_64.whl",
             "60252822adea5d0b10cd990a7dc7bedf7435f30ae40083c7a624a85a43225abc", ()),
    WheelPin("nvidia-cufft-cu11", "10.9.0.58",
             "nvidia_cufft_cu11-10.9.0.58-py3-none-manylinux2014_x86_64.whl",
             "e21037259995243cc370dd63c430d77ae9280bedb68d5b5a18226bfc92e5d748", ()),
    WheelPin("nvidia-curand-cu11", "10.3.0.86",
             "nvidia_curand_cu11-10.3.0.86-py3-none-manylinux2014_x86_64.whl",
             "cd4cffbf78bb06580206b4814d5dc696d1161c902aae37b2bba00056832379e6", ()),
    WheelPin("nvidia-cusolver-cu11", "11.4.1.48",
             "nvidia_cusolver_cu11-11.4.1.48-py3-none-manylinux2014_x86_64.whl",
             "ea9fb1ad8c644ca9ed55af13cc39af3b7ba4c3eb5aef18471fe1fe77d94383cb", ()),
    WheelPin("nvidia-cusparse-cu11", "11.7.5.86",
             "nvidia_cusparse_cu11-11.7.5.86-py3-none-manylinux2014_x86_64.whl",
             "8d7cf1628fd8d462b5d2ba6678fae34733a48ecb80495b9c68672ec6a6dde5ef", ()),
    WheelPin("nvidia-cuda-nvrtc-cu11", "11.8.89",
             "nvidia_cuda_nvrtc_cu11-11.8.89-py3-none-manylinux2014_x86_64.whl",
             "a8d02f3cba345be56b1ffc3e74d8f61f02bb758dd31b0f20e12277a5a244f756", ()),
    WheelPin("nvidia-nvtx-cu11", "11.8.86",
             "nvidia_nvtx_cu11-11.8.86-py3-none-manylinux2014_x86_64.whl",
             "979f5b2aef5da164c5c53c64c85c3dfa61b8b4704f4f963bb568bf98fa8472e8", ()),
    WheelPin("nvidia-cudnn-cu11", "8.9.6.50",
             "nvidia_cudnn_cu11-8.9.6.50-py3-none-manylinux1_x86_64.whl",
             "319a8f7ca3d65139f1b69998595c7076ae0e4271a325e5dfde50a3ca31f55584", ()),
    WheelPin("nvidia-nccl-cu11", "2.21.5",
             "nvidia_nccl_cu11-2.21.5-py3-none-manylinux2014_x86_64.whl",
             "49d8350629c7888701d1fd200934942671cb5c728f49acc5a0b3a768820bed29", ()),
)
PYPI_CUDA_MAJOR = "11"
PROVIDER = "mxbuild-check-cuda-runtime"     # the local package; never leaves the container
LIB_MOUNT = "/opt/mxbuild-check-cuda"


@dataclass(frozen=True)
class Provided:
    soname: str
    source: str          # distro | pypi | driver | missing
    package: str         # the distro package, the wheel (name==version), or ""
    why: str = ""

    def describe(self) -> str:
        if self.source == "missing":
            return f"{self.soname}: missing — {self.why}"
        return f"{self.soname}: {self.source} {self.package}" + (f" ({self.why})" if self.why
                                                                   else "")


# ------------------------------------------------------------------ PyPI wheels

def pypi_libraries(cache_dir: Path) -> dict[str, tuple[WheelPin, Path]]:
    """soname -> (wheel, unpacked library path) for NVIDIA's CUDA 11 wheels: each wheel
    fetched and checked against its pin by mxbuild's fetcher (MXBUILD_WHEEL_DIR first),
    its `nvidia/*/lib/*.so*` unpacked once under the cache (by sha256)."""
    from mxbuild.fetch import cached_wheel
    out = {}
    for pin in PYPI_CUDA11:
        wheel = cached_wheel(pin, cache_dir / "downloads")
        dest = cache_dir / "cuda-pypi" / pin.sha256[:16]
        if not (dest / ".complete").is_file():
            shutil.rmtree(dest, ignore_errors=True)
            with zipfile.ZipFile(wheel) as z:
                for name in z.namelist():
                    if re.match(r"^nvidia/[^/]+/lib/[^/]+\.so[.\d]*$", name):
                        target = dest / Path(name).name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with z.open(name) as src, open(target, "wb") as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
            (dest / ".complete").write_text(pin.filename + "\n")
        for lib in dest.glob("*.so*"):
            out[lib.name] = (pin, lib)
    return out


# ------------------------------------------------------------------ planning

def plan(cell: Cell, *, distro_candidates: set[str], driver_package: str | None,
         distro_cuda: str | None, pypi: dict[str, tuple[WheelPin, Path]]) -> list[Provided]:
    """Where each soname the cell's library needs from the host comes from (pure: the
    container's answers are passed in). distro_candidates: the declared distro
    alternatives apt has a candidate for; distro_cuda: the archive's nvidia-cuda-toolkit
    version (for the reason when nothing serves)."""
    alternatives = dict(cell.runtime_alternatives)
    major = (cell.cuda or "").split(".")[0]
    archive = (f"{cell.codename}'s archive has CUDA {distro_cuda}" if distro_cuda
               else f"{cell.codename}'s archive has no CUDA toolkit")
    out = []
    for soname, package in cell.runtime_packages:
        if package == "driver":
            out.append(Provided(soname, "driver", driver_package) if driver_package else
                       Provided(soname, "missing", "", f"{cell.codename}'s archive has no "
                                "driver package (libnvidia-compute-NNN / libcuda1)"))
        elif alternatives.get(soname) in distro_candidates:
            out.append(Provided(soname, "distro", alternatives[soname],
                                f"Depends alternative of {package}"))
        elif major == PYPI_CUDA_MAJOR and soname in pypi:
            pin = pypi[soname][0]
            out.append(Provided(soname, "pypi", f"{pin.name}=={pin.version}",
                                f"provides {package}"))
        elif major == PYPI_CUDA_MAJOR:
            stem = soname.split(".so")[0]
            theirs = sorted(n for n in pypi if n.split(".so")[0] == stem)
            out.append(Provided(soname, "missing", "", (
                f"PyPI's CUDA 11 wheels ship {', '.join(theirs)}, not {soname}" if theirs else
                f"no PyPI CUDA 11 wheel ships {stem}") + f"; {archive}; NVIDIA's repository "
                f"({package}) is not reachable here"))
        else:
            out.append(Provided(soname, "missing", "", (
                f"CUDA {cell.cuda}: {archive}, PyPI has CUDA runtime wheels for CUDA 11 and "
                f"12 only, NVIDIA's repository ({package}) is not reachable here")))
    return out


# ------------------------------------------------------------------ the container

def _extra_sources(cell: Cell) -> str:
    """The archive components that hold CUDA libraries and the driver's user-space part."""
    mirror = cell.distro.base.bootstrap.mirror if cell.distro.base.bootstrap else None
    if mirror is None:
        return ""
    if cell.distro.family == "ubuntu":
        return (f"deb {mirror} {cell.codename} restricted multiverse\n"
                f"deb {mirror} {cell.codename}-updates main universe restricted multiverse\n")
    return f"deb {mirror} {cell.codename} contrib non-free\n"


def _candidates(box, names) -> set[str]:
    found = set()
    for name in names:
        policy = box.run(["apt-cache", "policy", name], check=False).output
        if "Candidate:" in policy and "Candidate: (none)" not in policy:
            found.add(name)
    return found


PREFERRED_DRIVERS = ("libnvidia-compute-535", "libnvidia-compute-535-server")  # the hand check's


def _driver_candidates(box) -> list[str]:
    """Packages with libcuda.so.1, best first: Debian's libcuda1; on Ubuntu
    libnvidia-compute-535 (what the hand check used), then the other
    libnvidia-compute-NNN[-server] newest first, then libcuda1-NNN (xenial, bionic)."""
    if _candidates(box, ["libcuda1"]):
        return ["libcuda1"]
    found = [p for p in PREFERRED_DRIVERS if _candidates(box, [p])]
    for pattern in ("libnvidia-compute-", "libcuda1-"):
        listed = box.run(["apt-cache", "search", "--names-only",
                          f"^{pattern}[0-9]+(-server)?$"], check=False).output
        names = re.findall(rf"^({pattern}(\d+)(?:-server)?) ", listed, re.M)
        found += [n for n, _ in sorted(names, key=lambda x: (-int(x[1]), x[0]))
                  if n not in found]
    return found


def _install_driver(box, env: dict, tries: int = 6) -> str | None:
    """The first driver package apt really installs (an archive may list a version whose
    files its pool no longer has: jammy-updates' 535 is a transitional package to 580,
    whose files answered 404 here)."""
    for package in _driver_candidates(box)[:tries]:
        got = box.run(["apt-get", "install", "-y", "--no-install-recommends", package],
                      env=env, check=False)
        if got.exit_code == 0 and box.run(["sh", "-c", "ldconfig -p | grep -q 'libcuda.so.1 '"],
                                          check=False).exit_code == 0:
            return package
    return None


def _provider_deb(box, provides: list[str], libraries: dict[str, str], multiarch: str) -> str:
    """Build, inside the container, the local package that Provides the NVIDIA names the
    PyPI libraries serve. Its files: a link in the multiarch directory to each mounted
    library (`libraries`: file name -> its path in the container). Links, not an
    ld.so.conf.d entry: bionic's ldconfig (glibc 2.27) calls cuDNN's and cuSOLVER's
    libraries "truncated" and leaves them out of its cache, and the loader finds them
    only in its default directories."""
    root = f"/tmp/{PROVIDER}"
    control = (f"Package: {PROVIDER}\nVersion: 0\nArchitecture: amd64\n"
               "Maintainer: mxbuild check harness <check@localhost>\n"
               f"Provides: {', '.join(provides)}\n"
               "Description: CUDA runtime from NVIDIA's PyPI wheels (local check only)\n"
               " Built inside a throwaway check container; never published.\n")
    libdir = f"{root}/usr/lib/{multiarch}"
    box.run(["mkdir", "-p", f"{root}/DEBIAN", libdir])
    box.write_file(f"{root}/DEBIAN/control", control)
    box.write_file(f"{root}/DEBIAN/postinst", "#!/bin/sh\nldconfig 2>/dev/null || true\n")
    box.run(["chmod", "0755", f"{root}/DEBIAN/postinst"])
    for name, target in sorted(libraries.items()):
        box.run(["ln", "-s", target, f"{libdir}/{name}"])
    box.run(["dpkg-deb", "--build", root, f"/tmp/{PROVIDER}.deb"])
    return f"/tmp/{PROVIDER}.deb"


LOAD_CHECK = """
import ctypes, json, mxnet as mx
lib = mx.base._LIB
version, gpus = ctypes.c_int(), ctypes.c_int()
lib.MXGetVersion(ctypes.byref(version))
rc = lib.MXGetGPUCount(ctypes.byref(gpus))
features = mx.runtime.Features()
print(json.dumps({"MXGetVersion": version.value, "MXGetGPUCount": gpus.value,
                  "MXGetGPUCount_rc": rc, "library": lib._name,
                  "features_on": sorted(f for f in features if features.is_enabled(f))}))
"""


def check(ctx, cell: Cell, client_image: str, repo_url: str, keyring: bytes,
          client_version: str, work: Path, logf) -> dict:
    """The check of one GPU cell in a fresh container of `client_image`: returns how each
    soname was provided, apt's resolution, the load check and the smoke suite's counts."""
    from mxbuild import smoke
    from mxbuild.containers import Container
    from mxbuild.repo.sign import KEYRING_NAME
    pypi = pypi_libraries(ctx.opts.cache_dir) if (cell.cuda or "").startswith(
        PYPI_CUDA_MAJOR + ".") else {}
    if work.exists():
        shutil.rmtree(work)
    (work / "fixtures").mkdir(parents=True)
    for f in smoke.model_fixtures(ctx).iterdir():
        shutil.copy(f, work / "fixtures" / f.name)
    shutil.copytree(ctx.data.smoke_tests, work / "tests",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (work / KEYRING_NAME).write_bytes(keyring)
    # the distinct unpacked wheels (a wheel serves several sonames): mounted, then linked
    unpacked = {f"{LIB_MOUNT}/{pin.sha256[:16]}": path.parent for pin, path in pypi.values()}
    mounts = [Mount(target, str(source), type="bind", read_only=True)
              for target, source in unpacked.items()]
    result: dict = {"cell": cell.id, "ok": False}
    with Container(ctx.docker, client_image, label=f"gpu-check-{cell.id}", network="host",
                   mounts=mounts, log_file=logf) as box:
        box.copy_into(work / KEYRING_NAME, "/usr/share/keyrings")
        box.write_file("/etc/apt/sources.list.d/mxbuild-check-cuda.list", _extra_sources(cell))
        box.write_file("/etc/apt/sources.list.d/mxbuild.list",
                       smoke.apt_source_line(repo_url, cell) + "\n")
        smoke.apt_update(box)
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        alternatives = dict(cell.runtime_alternatives)
        toolkit = box.run(["sh", "-c", "apt-cache show nvidia-cuda-toolkit 2>/dev/null | "
                           "sed -n 's/^Version: //p' | head -1"], check=False).output.strip()
        driver = _install_driver(box, env)
        provided = plan(cell, distro_candidates=_candidates(box, alternatives.values()),
                        driver_package=driver, distro_cuda=toolkit or None, pypi=pypi)
        result["provided"] = [p.__dict__ for p in provided]
        served = {p.soname for p in provided if p.source == "pypi"}
        names = sorted({pkg for so, pkg in cell.runtime_packages if so in served})
        if names:
            libraries = {f.name: f"{target}/{f.name}"
                         for target, source in unpacked.items() for f in source.iterdir()}
            deb = _provider_deb(box, names, libraries, cell.multiarch)
            box.run(["apt-get", "install", "-y", deb], env=env)
        pin = f"{cell.package.name}={cell.deb_version}"
        apt = box.run(["apt-get", "install", "-y", "--no-install-recommends", pin], env=env,
                      check=False)
        result["apt_install"] = "ok" if apt.exit_code == 0 else apt.output[-1200:]
        missing = {p.soname: dict(cell.runtime_packages)[p.soname] for p in provided
                   if p.source == "missing"}
        if apt.exit_code != 0:
            if not missing:      # everything should have resolved: a real finding
                result["error"] = "apt-get install failed although every soname has a source"
                return result
            smoke.install(box, cell, gpu=True)      # what installs; libmxnet --force-depends
        result["installed"] = box.run(["sh", "-c", "dpkg-query -W -f '${Package}=${Version}\\n'"
                                       f" {cell.package.name} {driver or ''} "
                                       + " ".join(sorted({p.package for p in provided
                                                          if p.source == 'distro'}))
                                       + (f" {PROVIDER}" if names else "")],
                                      check=False).output.split()
        box.run(["pip", *smoke.pip_install_args(f"{repo_url}/{smoke.INDEX_PREFIX}/",
                                                client_version)])
        if not missing:
            load = box.run(["python", "-c", LOAD_CHECK], check=False)
            result["load"] = (json.loads(load.output.strip().splitlines()[-1])
                              if load.exit_code == 0 else {"error": load.output[-1500:]})
        expect = smoke.expectations(cell, _payload_from_box(box, cell), missing, False,
                                    client_version)
        (work / "expect.json").write_text(json.dumps(expect, indent=2))
        box.copy_into(work, "/srv", arcname="smoke")
        run = box.run(["python", "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider",
                       f"{smoke.SMOKE_DIR}/tests/test_smoke.py",
                       f"{smoke.SMOKE_DIR}/tests/test_gpu.py",
                       f"--junitxml={smoke.SMOKE_DIR}/junit.xml"],
                      env={"MXBUILD_EXPECT": f"{smoke.SMOKE_DIR}/expect.json",
                           "MXBUILD_FIXTURES": f"{smoke.SMOKE_DIR}/fixtures"},
                      workdir=smoke.SMOKE_DIR, check=False)
        box.copy_out(f"{smoke.SMOKE_DIR}/junit.xml", work)
        logf.write(run.output)
    counts = smoke.junit_counts(work / "junit.xml", missing, False)
    result["smoke"] = counts.as_dict()
    result["missing"] = {p.soname: p.why for p in provided if p.source == "missing"}
    load_ok = bool(missing) or (result.get("load", {}).get("MXGetVersion") is not None)
    result["ok"] = (run.exit_code == 0 and counts.failed == counts.errors == 0 and load_ok)
    return result


def _payload_from_box(box, cell: Cell):
    """What the smoke expectations need (libmxnet.so's sha256, bundled libraries): from the
    installed package's buildinfo.json, as `invoke smoke` reads it from the .deb."""
    from mxbuild.payload import PRIVATE_DIR, Payload
    info = json.loads(box.run(["cat", f"/usr/share/doc/{cell.package.name}/buildinfo.json"])
                      .output)
    prefix = f"usr/lib/{cell.multiarch}/"
    files = {k[len(prefix):]: v for k, v in info["files"].items() if k.startswith(prefix)}
    bundled = tuple(Path(rel).name for rel in sorted(files)
                    if str(Path(rel).parent) == PRIVATE_DIR)
    return Payload(Path("/nonexistent"), files, {}, info["source"], info["source_date_epoch"],
                   bundled)


# ------------------------------------------------------------------ entry points

def client_image_for(ctx, cell: Cell, logf) -> str:
    """The smoke client image of the cell's distro (built, loaded or reused)."""
    from mxbuild import images
    from mxbuild.fetch import cached_wheel
    from mxbuild.smoke import client_image
    base = images.ensure_base(ctx, cell.distro, logf)
    runtime = images.ensure_runtime_image(ctx, cell, base, logf)
    wheel = cached_wheel(cell.official_wheel, ctx.opts.cache_dir / "downloads",
                         ctx.opts.extra_ca_bundle)
    return client_image.ensure_client_image(ctx, cell, runtime, wheel, logf).ref


def client_version(ctx, cell: Cell) -> str:
    from mxbuild import client as thin_client
    return thin_client.wheel_version(thin_client.thin_wheel_for(cell, ctx.opts))


@contextlib.contextmanager
def local_repository(ctx, cell: Cell, debs_dir: Path, work: Path):
    """The cell's built .debs and its thin Python client in a throwaway local repository
    (signed by a throwaway key), served on loopback; yields (url, keyring)."""
    from mxbuild import deb, thin
    from mxbuild.repo.publish import Upload, publish
    from mxbuild.repo.sign import Signer
    from mxbuild.repo.storage import LocalStorage
    from mxbuild.smoke import serve_directory
    storage = LocalStorage(work / "repo")
    signer = Signer(work / "gnupg")
    (work / "gnupg").mkdir(parents=True, exist_ok=True, mode=0o700)
    for c in thin.for_cell(ctx, cell, debs_dir):
        if c.kind == "python":
            thin.get(c.kind).publish(storage, c)
    publish(storage, signer, [Upload(d.path, cell.suite(), cell.component, cell.id)
                              for d in deb.built_debs(debs_dir, cell)])
    with serve_directory(work / "repo") as url:
        yield url, signer.public_keyring()


def check_built(ctx, cell: Cell, debs_dir: Path, work: Path) -> dict:
    """By hand: the cell's .debs as `invoke build --publish none` left them."""
    logf = open(work.with_suffix(".log"), "w")
    with logf:
        image = client_image_for(ctx, cell, logf)
        version = client_version(ctx, cell)
        with local_repository(ctx, cell, debs_dir, work / "repo-work") as (url, keyring):
            return check(ctx, cell, image, url, keyring, version, work / "check", logf)


def check_from_repo(client, cell: Cell, repo_url: str, keyring_path: Path, work: Path) -> dict:
    """The rehearsal's host check of a promoted GPU cell, on an agent's engine."""
    from mxbuild import options
    from mxbuild.context import open_run
    work.mkdir(parents=True, exist_ok=True)
    ctx = open_run(options.resolve(out_dir=str(work / "out")), docker=client, gpu=False)
    logf = open(work / "check.log", "w")
    with logf:
        image = client_image_for(ctx, cell, logf)
        result = check(ctx, cell, image, repo_url, keyring_path.read_bytes(),
                       client_version(ctx, cell), work / "check", logf)
    result["packages"] = list(cell.package_names)
    return result


def describe(result: dict) -> str:
    lines = [f"{result['cell']}: {'ok' if result['ok'] else 'FAILED'}"]
    for p in result.get("provided", []):
        lines.append("  " + Provided(**p).describe())
    lines.append(f"  apt-get install: {result.get('apt_install', '-')[:300]}")
    if "load" in result:
        lines.append(f"  load: {json.dumps(result['load'])[:600]}")
    if "smoke" in result:
        s = result["smoke"]
        lines.append(f"  smoke: {s['passed']} passed, {s['failed']} failed, {s['skipped']} "
                     f"skipped of {s['tests']}; GPU checks {s['gpu_checks']}")
    if result.get("error"):
        lines.append(f"  error: {result['error']}")
    return "\n".join(lines)

