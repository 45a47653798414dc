"""The images a cell runs in: the distro's base image (bootstrapped, or a registry image
pinned by digest in pins.lock), and the build, runtime and compile images rendered from
docker/ templates.

Tags are content hashes of everything that goes into an image, so an image whose inputs
did not change is found by its tag and never rebuilt — in this engine, or in the artifact
cache (image_store.py), from which an engine that lacks it loads it.

Architectures: the images of the primary architecture (amd64) keep the tags, inputs and
pins.lock keys they had before architectures existed. Another architecture's base and
runtime images carry its name in their tags (`mxbuild/base:debian12-arm64-…`), its
bootstrap inputs and pins.lock key (`debian12-arm64`), and are built for its platform
(under emulation). Its cells package with the primary architecture's build image (dpkg
tools run natively; the recipe's package_image adds the :arm64 libraries).
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from typing import IO, Callable

import docker
from docker.errors import APIError, ImageNotFound

from . import bootstrap
from .containers import Container
from .errors import ImageError
from .log import log
from .matrix import Architecture, BootstrapSpec, Cell, Distro
from .pins import Pins

BASE_REPO = "mxbuild/base"
# SOURCE_DATE_EPOCH of every bootstrap (2024-01-01): mtimes are clamped to it and it is the
# image's creation time, so the same package set gives the same image id anywhere. A
# constant, never the clock.
BOOTSTRAP_EPOCH = 1704067200
BUILD_REPO = "mxbuild/build"
RUNTIME_REPO = "mxbuild/runtime"
COMPILE_REPO = "mxbuild/compile"


@dataclass(frozen=True)
class ImageRef:
    ref: str   # what FROM / run uses: a tag or name@sha256:…
    id: str    # the engine's image id (sha256:…)


def content_hash(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def find(client: docker.DockerClient, ref: str):
    try:
        return client.images.get(ref)
    except ImageNotFound:
        return None


def ensure_tagged(ctx, tag: str, make: Callable[[], object], logf: IO[str],
                  reusing: str = "reusing") -> ImageRef:
    """The engine's image for a content-hash tag: present, else loaded from the artifact
    cache, else made here by `make`. The artifact cache gets it if it lacks it (an agent
    with a warm engine fills the cache for the empty ones)."""
    client = ctx.docker
    image = find(client, tag)
    if image is not None:
        logf.write(f"{reusing} {tag} ({image.id})\n")
    else:
        image = ctx.image_store.load(client, tag, logf)
        if image is not None:          # the cache has it: nothing to store
            return ImageRef(tag, image.id)
        image = make()
    ctx.image_store.save(client, tag, image, logf)
    return ImageRef(tag, image.id)


# ------------------------------------------------------------------ base images

def foreign(cell: Cell) -> Architecture | None:
    """The cell's architecture if it is not the primary one (None: the primary)."""
    return None if cell.arch.primary else cell.arch


def _suffix(arch: Architecture | None) -> str:
    return f"-{arch.name}" if arch else ""


def pin_name(distro: Distro, arch: Architecture | None = None) -> str:
    """pins.lock's key of a base: the distro (primary architecture) or distro-arch."""
    return distro.name + _suffix(arch)


def base_tag(distro: Distro, arch: Architecture | None = None) -> str:
    """The engine tag of a distro's base image: its registry name:tag, or a tag keyed by
    the bootstrap inputs. `arch`: another architecture than the primary one."""
    if distro.base.image:
        if arch:
            raise ImageError(f"{distro.name} takes its base from a registry "
                             f"({distro.base.image}): mxbuild pins registry bases for the "
                             f"primary architecture only, not {arch.name}",
                             f"give {distro.name} a `bootstrap:` base in matrix.yaml, or drop "
                             f"{arch.name} from the builds that target it")
        return distro.base.image
    return f"{BASE_REPO}:{pin_name(distro, arch)}-{inputs_digest(distro, arch)[:12]}"


def bootstrap_inputs(spec: BootstrapSpec, arch: Architecture | None = None) -> dict:
    """Everything a bootstrap's bytes depend on but the archive's package versions (those
    are recorded in pins.lock and reported as drift)."""
    spec = bootstrap.for_arch(spec, arch)
    fields = {k: v for k, v in asdict(spec).items() if v is not None}
    # the primary architecture's bootstrap reads `mirror` only; the other architectures'
    # archives are not inputs of its bytes (and its tag predates them)
    fields.pop("arch_mirrors", None)
    target = {"arch": arch.name, "platform": arch.platform, "variant": arch.variant} \
        if arch else {}
    return {"method": bootstrap.method(spec), **fields, **target, "epoch": BOOTSTRAP_EPOCH,
            "format": 2}


def inputs_digest(distro: Distro, arch: Architecture | None = None) -> str:
    return content_hash(bootstrap_inputs(distro.base.bootstrap, arch))


def _bootstrap(ctx, distro: Distro, tag: str, logf: IO[str], arch: Architecture | None = None):
    made = bootstrap.bootstrap_image(ctx.docker, distro.base.bootstrap, tag,
                                     epoch=BOOTSTRAP_EPOCH, work=ctx.opts.cache_dir / "bootstrap",
                                     cache_dir=ctx.opts.cache_dir, logf=logf, arch=arch)
    logf.write(f"{made.tool} ({made.tool_version}): {len(made.packages)} packages, rootfs "
               f"sha256 {made.rootfs_sha256}, image {made.image_id}, {made.seconds} s\n")
    return ctx.docker.images.get(made.image_id)


def image_packages(client, ref: str) -> dict[str, str]:
    """Every package installed in an image, with its version (dpkg's database)."""
    with Container(client, ref, label="packages") as box:
        out = box.run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"]).output
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def ensure_base(ctx, distro: Distro, logf: IO[str],
                arch: Architecture | None = None) -> ImageRef:
    """The distro's base image (of `arch`; None: the primary architecture), verified
    against pins.lock; drift is reported by name (pins.lock itself is only written by
    `invoke lock`)."""
    pins = Pins.load(ctx.opts.pins_path)
    client = ctx.docker
    if distro.base.image and not arch:
        return _registry_base(client, distro, pins)
    tag = base_tag(distro, arch)
    ref = ensure_tagged(ctx, tag, lambda: _bootstrap(ctx, distro, tag, logf, arch), logf,
                        reusing="reusing base image")
    _check_pin(client, distro, pins, ref.id, logf, arch)
    return ref


def _check_pin(client, distro: Distro, pins: Pins, image_id: str, logf: IO[str],
               arch: Architecture | None = None) -> None:
    name = pin_name(distro, arch)
    pin = pins.base(name)
    fix = f"if intended, record it: invoke lock --distro {distro.name}" + (
        f" --arch {arch.name}" if arch else "")
    if pin is None:
        message = f"{name} is not pinned in {pins.path.name}"
    elif pin.get("inputs") != inputs_digest(distro, arch):
        message = (f"{pins.path.name} pins other bootstrap inputs for {name} "
                   "(matrix.yaml changed since)")
    elif pin.get("id") == image_id:
        logf.write(f"base image {image_id} is the one {pins.path.name} pins\n")
        return
    else:
        drift = bootstrap.package_drift(pin.get("packages", {}),
                                        image_packages(client, image_id))
        message = (f"base image of {name} drifted from {pins.path.name}: "
                   f"{pin.get('id')} → {image_id}; packages: "
                   + ("; ".join(drift) if drift else "the same set (other bytes)"))
    logf.write(f"warning: {message}\n  {fix}\n")
    log.warning("%s (%s)", message, fix)


def lock_entry(ctx, distro: Distro, logf: IO[str], arch: Architecture | None = None) -> dict:
    """What pins.lock records (under pin_name) for a distro's base of `arch` (None: the
    primary architecture): the image this engine has (or makes) for the current inputs,
    and its package set; a registry image's digest."""
    client = ctx.docker
    if distro.base.image and not arch:
        return {"kind": "registry", "image": distro.base.image,
                "digest": registry_digest(client, distro.base.image,
                                          "check the image name in matrix.yaml")}
    tag = base_tag(distro, arch)
    image = find(client, tag) or _bootstrap(ctx, distro, tag, logf, arch)
    spec = distro.base.bootstrap
    layers = image.attrs.get("RootFS", {}).get("Layers", [])
    platform = {"architecture": image.attrs.get("Architecture"),
                **({"variant": image.attrs["Variant"]} if image.attrs.get("Variant") else {})} \
        if arch else {}
    return {"kind": "bootstrap", "inputs": inputs_digest(distro, arch), "tag": tag,
            "id": image.id, **platform,
            "tool": bootstrap.method(spec), "tool_version": bootstrap.tool_version(
                bootstrap.tool_for(spec)),
            # the one layer's diff id: the sha256 of the rootfs tar mxbuild wrote
            "rootfs_sha256": layers[0].split(":", 1)[-1] if len(layers) == 1 else None,
            "packages": image_packages(client, image.id)}


def registry_digest(client, image: str, alternative: str) -> str:
    """The registry digest (sha256:…) of a registry image name:tag, as this engine has it
    (pulled first if it lacks it): what `invoke lock` records for it."""
    pulled = _pull(client, image, alternative)
    digests = [d.split("@", 1)[1] for d in pulled.attrs.get("RepoDigests", []) if "@" in d]
    if not digests:
        raise ImageError(f"{image} has no registry digest in this engine",
                         "pull it from its registry first")
    return digests[0]


def toolkit_images(cells) -> list[str]:
    """The registry images (name:tag) any recipe builds these cells FROM (the compile
    recipe's CUDA toolkit images): what `invoke lock` pins."""
    from . import plugins       # the table only: it imports no plug-in at import
    recipes = [plugins.recipe(name) for name in plugins.recipe_names()]
    return sorted({image for c in cells for r in recipes for image in r.pinned_images(c)})


def lock_toolkits(pins: Pins, toolkits: list[str],
                  resolve: Callable[[str], str]) -> tuple[Pins, list[str]]:
    """pins with each toolkit image's current digest (resolve: name:tag → sha256:…), and
    one line of news per image. An image resolve cannot reach keeps the digest pins.lock
    has (a warning says so); one that has none is an ImageError, after the rest is done."""
    news, missing = [], []
    for image in toolkits:
        old = pins.toolkits.get(image)
        try:
            digest = resolve(image)
        except ImageError as exc:
            if old is None:
                missing.append(f"{image} ({exc.message})")
            else:
                news.append(f"! {image}: kept {old} (cannot resolve it now: {exc.message})")
            continue
        pins = pins.with_toolkit(image, digest)
        news.append(f"= {image}: {digest} (unchanged)" if digest == old else
                    f"✓ {image}: {digest}" + (f" (was {old})" if old else ""))
    if missing:
        pins.write()
        raise ImageError("no digest for toolkit image(s): " + "; ".join(missing),
                         "make the registry reachable or `docker load` the image, then run "
                         "`invoke lock` again for the distros that use it")
    return pins, news


def _registry_base(client, distro: Distro, pins: Pins) -> ImageRef:
    pin = pins.base(distro.name)
    if not pin or pin.get("image") != distro.base.image or not pin.get("digest"):
        raise ImageError(f"{distro.base.image} (distros.{distro.name}.base.image) has no "
                         f"digest in {pins.path.name}",
                         f"pin it: invoke lock --distro {distro.name} (pulls it and records "
                         "its digest)")
    ref = f"{distro.base.image}@{pin['digest']}"
    image = pull_pinned(client, ref, "give the distro a `bootstrap:` base in matrix.yaml")
    return ImageRef(ref, image.id)


def _pull(client, ref: str, alternative: str):
    image = find(client, ref)
    if image is None:
        try:
            name, _, tag = ref.partition("@") if "@" in ref else ref.rpartition(":")
            image = client.images.pull(name, tag=tag or None)
        except APIError as exc:
            raise ImageError(f"cannot pull {ref}: {exc.explanation or exc}",
                             f"make the registry reachable, `docker load` the image, or "
                             f"{alternative}")
    return image


def pull_pinned(client, ref: str, alternative: str):
    """The image of a registry reference pinned by digest (name@sha256:…): from the engine
    if it has it, else pulled; its repo digests must include the pinned one."""
    want = ref.split("@", 1)[1]
    image = _pull(client, ref, alternative)
    if not any(d.endswith("@" + want) for d in image.attrs.get("RepoDigests", [])):
        raise ImageError(f"{ref}: the local image's repo digests {image.attrs.get('RepoDigests')} "
                         f"do not include {want}", "remove the local image and pull it again")
    return image


# ------------------------------------------------------------------ derived images

def template_tag(repo: str, label: str, dockerfile: str) -> str:
    return f"{repo}:{label}-{content_hash(dockerfile)[:12]}"


def build_from_template(ctx, repo: str, label: str, dockerfile: str, logf: IO[str],
                        arch: Architecture | None = None) -> ImageRef:
    """The image of a rendered Dockerfile, tagged by its content. `arch`: built for that
    architecture's platform (under emulation; FROM an image of it), its name in the tag."""
    tag = template_tag(repo, label + _suffix(arch), dockerfile)
    return ensure_tagged(ctx, tag, lambda: _build(ctx.docker, tag, dockerfile, logf,
                                                  arch.platform if arch else None), logf)


def _build(client, tag: str, dockerfile: str, logf: IO[str], platform: str | None = None):
    logf.write(f"building {tag}{f' for {platform}' if platform else ''}\n--- Dockerfile\n"
               f"{dockerfile}---\n")
    errors = []
    # APIClient.build never raises on a failed step: the failure is an `error` chunk.
    for chunk in client.api.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True,
                                  forcerm=True, pull=False, decode=True,
                                  **({"platform": platform} if platform else {})):
        if "stream" in chunk:
            logf.write(chunk["stream"])
        if "error" in chunk:
            errors.append(chunk["error"])
            logf.write("ERROR: " + chunk["error"] + "\n")
    logf.flush()
    if errors:
        raise ImageError(f"building {tag} failed: {errors[-1].strip()[:300]}", "")
    return client.images.get(tag)


def _dockerfile(ctx, role: str, base: ImageRef, distro: Distro) -> str:
    return ctx.data.render(f"docker/{role}.Dockerfile.j2", base=base, distro=distro)


def planned_images(ctx, cell: Cell) -> list[tuple[str, str, str | None]]:
    """(role, tag, where: "engine", "artifact cache" or None) of the images the image stage
    needs, without building or loading anything. Tags that depend on a base image found
    nowhere are reported as unknown."""
    def where(tag: str) -> tuple[str | None, str | None]:
        image = find(ctx.docker, tag)
        if image is not None:
            return "engine", image.id
        recorded = ctx.image_store.recorded_id(tag)
        return ("artifact cache", recorded) if recorded else (None, None)

    arch = foreign(cell)
    bases = {None: base_tag(cell.distro)} | ({arch: base_tag(cell.distro, arch)} if arch else {})
    found = {a: where(tag) for a, tag in bases.items()}
    out = [("base", bases[arch], found[arch][0])]
    if arch:   # the build image comes from the primary architecture's base
        out.append(("base " + cell.distro.name, bases[None], found[None][0]))
    for role, repo, image_arch in (("build", BUILD_REPO, None),
                                   ("runtime", RUNTIME_REPO, arch)):
        label = cell.distro.name + _suffix(image_arch)
        base_id = found[image_arch][1]
        if base_id is None:
            out.append((role, f"{repo}:{label}-<after base>", None))
            continue
        tag = template_tag(repo, label, _dockerfile(
            ctx, role, ImageRef(bases[image_arch], base_id), cell.distro))
        out.append((role, tag, where(tag)[0]))
    return out


def ensure_build_image(ctx, cell: Cell, base: ImageRef, logf) -> ImageRef:
    """The build image of the cell's distro, from `base`: the primary architecture's base
    for every cell (packaging tools run natively; see the module docstring)."""
    return build_from_template(ctx, BUILD_REPO, cell.distro.name,
                               _dockerfile(ctx, "build", base, cell.distro), logf)


def ensure_runtime_image(ctx, cell: Cell, base: ImageRef, logf) -> ImageRef:
    """The runtime image of the cell's distro and architecture, from `base` (of the
    cell's architecture)."""
    return build_from_template(ctx, RUNTIME_REPO, cell.distro.name,
                               _dockerfile(ctx, "runtime", base, cell.distro), logf,
                               foreign(cell))


HOST_QUALIFIER = ":host"    # build-deps.txt: a library the compiled binary links


def compile_packages(ctx, cell: Cell, toolkit: str | None = None) -> list[str]:
    """recipes/compile/build-deps.txt for the cell's architecture: a `:host` library as it
    is natively, as `name:<arch>` (multiarch) in a cross compile, which also gets the
    architecture's cross toolchain (`architectures.<arch>.cross.packages`)."""
    listed = (ctx.data.recipe("compile") / "build-deps.txt").read_text().splitlines()
    cross = cell.arch.cross
    packages = []
    for line in listed:
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if name.endswith(HOST_QUALIFIER):
            name = name[:-len(HOST_QUALIFIER)] + (f":{cell.arch.name}" if cross else "")
        packages.append(name)
    if cross:
        packages += cross.packages
    return packages + ([toolkit] if toolkit else [])   # the distro's CUDA toolkit package


def ensure_compile_image(ctx, cell: Cell, build: ImageRef, logf,
                         toolkit_image: str | None = None,
                         toolkit_package: str | None = None) -> ImageRef:
    """The build image plus MXNet's build dependencies, or, for a GPU preset that names
    NVIDIA's CUDA devel image (pinned by digest in pins.lock), that image plus the same
    dependencies. For an architecture the build machines compile for with a cross
    toolchain (arm64), `build` is the build machines' own (amd64) build image of the
    distro, and the image adds the toolchain and the distro's libraries of that
    architecture (one compile image per distro, variant and architecture)."""
    toolkit = toolkit_image
    toolkit_ref = None
    if toolkit:
        toolkit_ref = Pins.load(ctx.opts.pins_path).toolkit_ref(toolkit)
        if toolkit_ref is None:
            raise ImageError(f"toolkit image {toolkit} has no digest in pins.lock",
                             f"pin it: invoke lock --distro {cell.distro.name} (pulls it and "
                             "records its digest)")
        pull_pinned(ctx.docker, toolkit_ref, "set variants.<variant>.compile.toolkit to "
                    "{package: nvidia-cuda-toolkit} where the distro carries the toolkit")
    text = ctx.data.render("docker/compile.Dockerfile.j2", build=build, distro=cell.distro,
                           toolkit_image=toolkit_ref,
                           toolkit_package=toolkit_package,
                           cross_arch=cell.arch.name if cell.arch.cross else None,
                           packages=compile_packages(ctx, cell, toolkit_package))
    return build_from_template(ctx, COMPILE_REPO,
                               f"{cell.distro.name}-{cell.variant}{cell.arch.suffix}", text, logf)
