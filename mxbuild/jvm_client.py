"""The thin jar: MXNet's Scala/Java API without any native code, published as a Maven 2
repository next to the apt repository (`<repo>/maven/`, repo/maven.py). The host's
`libmxnet-scala` package brings the JNI library (in /usr/lib/<multiarch>/jni/, on
OpenJDK's default java.library.path), and MXNet's `org.apache.mxnet.Base` loads it with
`System.loadLibrary("mxnet-scala")` before it would extract anything from a jar — so one
jar runs on every native flavour.

A recipe that makes the JVM natives also makes the thin jar and its pom (payload client
files); the package stage leaves them next to the cell's .debs (out/debs/<cell>/).
"""
from __future__ import annotations

import io
import re
import time
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from .errors import MxbuildError
from .fetch import sha256_file
from .repo import maven
from .thin import ThinClient, ThinClientKind, register

GROUP_ID = "org.mxbuild"            # not upstream's: upstream never published a thin jar
ARTIFACT_ID = "mxnet-thin_2.11"     # Scala 2.11, as every MXNet 1.x JVM binary
NATIVE_PREFIX = "lib/native/"
# Upstream's POM also names scala-compiler and scala-reflect: its macros need them at
# build time only, so the thin jar's POM leaves them out.
BUILD_ONLY = {("org.scala-lang", "scala-compiler"), ("org.scala-lang", "scala-reflect")}
POM_NS = "http://maven.apache.org/POM/4.0.0"


@dataclass(frozen=True)
class Dependency:
    group_id: str
    artifact_id: str
    version: str


def coords(version: str) -> maven.Coords:
    return maven.Coords(GROUP_ID, ARTIFACT_ID, version)


def jar_name(version: str) -> str:
    return f"{ARTIFACT_ID}-{version}.jar"


def pom_name(version: str) -> str:
    return f"{ARTIFACT_ID}-{version}.pom"


def runtime_dependencies(pom: bytes, where: str) -> tuple[Dependency, ...]:
    """The compile/runtime dependencies an upstream POM names (build-only ones dropped)."""
    try:
        root = ET.fromstring(pom)
    except ET.ParseError as exc:
        raise MxbuildError(f"{where} is not a readable POM ({exc})", "check the pin")
    ns = {"m": POM_NS} if root.tag.startswith("{") else {}
    q = (lambda tag: f"m:{tag}") if ns else (lambda tag: tag)
    out = []
    for dep in root.findall(f"{q('dependencies')}/{q('dependency')}", ns):
        def text(tag):
            node = dep.find(q(tag), ns)
            return node.text.strip() if node is not None and node.text else ""
        if text("scope") in ("test", "provided", "system") or text("optional") == "true":
            continue
        found = Dependency(text("groupId"), text("artifactId"), text("version"))
        if not all((found.group_id, found.artifact_id, found.version)) or "${" in found.version:
            raise MxbuildError(f"{where}: dependency {found} has no literal version",
                               "pin a POM whose dependencies name their versions")
        if (found.group_id, found.artifact_id) not in BUILD_ONLY:
            out.append(found)
    return tuple(out)


def render_pom(version: str, deps: tuple[Dependency, ...], description: str) -> bytes:
    rows = "".join(
        f"    <dependency>\n      <groupId>{escape(d.group_id)}</groupId>\n"
        f"      <artifactId>{escape(d.artifact_id)}</artifactId>\n"
        f"      <version>{escape(d.version)}</version>\n    </dependency>\n" for d in deps)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<project xmlns="{POM_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
            f' xsi:schemaLocation="{POM_NS} http://maven.apache.org/xsd/maven-4.0.0.xsd">\n'
            f"  <modelVersion>4.0.0</modelVersion>\n  <groupId>{GROUP_ID}</groupId>\n"
            f"  <artifactId>{ARTIFACT_ID}</artifactId>\n  <version>{escape(version)}</version>\n"
            f"  <packaging>jar</packaging>\n  <name>Apache MXNet Scala/Java API, thin</name>\n"
            f"  <description>{escape(description)}</description>\n"
            f"  <licenses>\n    <license>\n      <name>Apache License, Version 2.0</name>\n"
            f"      <url>https://www.apache.org/licenses/LICENSE-2.0</url>\n    </license>\n"
            f"  </licenses>\n  <dependencies>\n{rows}  </dependencies>\n</project>\n").encode()


def thin_jar(full: Path, out: Path) -> Path:
    """`full` without its native code: every member but lib/native/…, in the same order
    with the same timestamps and attributes, so the same input gives the same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(full) as src, zipfile.ZipFile(buf, "w") as dst:
        kept = 0
        for info in src.infolist():
            if info.filename.startswith(NATIVE_PREFIX) or info.filename == "lib/":
                continue
            member = zipfile.ZipInfo(info.filename, info.date_time)
            member.external_attr = info.external_attr
            member.compress_type = zipfile.ZIP_STORED if info.is_dir() else zipfile.ZIP_DEFLATED
            dst.writestr(member, b"" if info.is_dir() else src.read(info))
            kept += 1
        if not kept:
            raise MxbuildError(f"{full.name} holds nothing but native code", "check the pin")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buf.getvalue())
    return out


# Members of a module jar that describe that module's build, not the merged jar: Maven's
# coordinates (version INTERNAL), the module's dependency list, its manifest.
_MODULE_ONLY = re.compile(r"^META-INF/(MANIFEST\.MF|DEPENDENCIES|maven/.*|INDEX\.LIST)$")


def _epoch_time(epoch: int) -> tuple[int, int, int, int, int, int]:
    """A zip entry's timestamp from SOURCE_DATE_EPOCH (zip cannot say before 1980)."""
    return time.gmtime(max(epoch, 315532800))[:6]


# params: the jar's contents and its manifest's fields, each independent
def assemble_thin_jar(modules: list[Path], out: Path, version: str, epoch: int,
                      license_text: bytes, notice_text: bytes, title: str) -> int:
    """One jar of the classes of `modules` (scala-package's core and infer jars), as
    upstream's assembly makes its full jar but without lib/native/: a manifest of its own,
    META-INF/LICENSE and NOTICE of the source release, then every other member sorted by
    name, stamped `epoch` — the same module jars give the same bytes. A name two modules
    hold with different bytes is an error. Returns the number of entries."""
    members: dict[str, bytes | None] = {}          # name -> bytes (None: a directory)
    for module in modules:
        with zipfile.ZipFile(module) as zf:
            for info in zf.infolist():
                name = info.filename
                if _MODULE_ONLY.match(name) or name in ("META-INF/LICENSE", "META-INF/NOTICE"):
                    continue
                if name.startswith(NATIVE_PREFIX) or name == "lib/":
                    raise MxbuildError(f"{module.name} holds native code ({name})",
                                       "the thin jar is built from the Java/Scala modules only")
                data = None if info.is_dir() else zf.read(info)
                if name in members and members[name] != data:
                    raise MxbuildError(f"{name} differs between the modules' jars",
                                       "check the source tree: two modules define one class")
                members[name] = data
    manifest = (f"Manifest-Version: 1.0\r\nCreated-By: mxbuild\r\n"
                f"Implementation-Title: {title}\r\nImplementation-Version: {version}\r\n"
                f"Automatic-Module-Name: org.apache.mxnet\r\n\r\n").encode()
    members.pop("META-INF/", None)
    when = _epoch_time(epoch)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as dst:
        def put(name: str, data: bytes | None) -> None:
            info = zipfile.ZipInfo(name, when)
            info.external_attr = ((0o040755 if data is None else 0o100644) << 16)
            info.compress_type = zipfile.ZIP_STORED if data is None else zipfile.ZIP_DEFLATED
            dst.writestr(info, b"" if data is None else data)
        put("META-INF/", None)
        put("META-INF/MANIFEST.MF", manifest)
        put("META-INF/LICENSE", license_text)
        put("META-INF/NOTICE", notice_text)
        for name in sorted(members):
            put(name, members[name])
        count = len(dst.infolist())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buf.getvalue())
    return count


def native_members(jar: Path) -> list[str]:
    with zipfile.ZipFile(jar) as zf:
        return [n for n in zf.namelist() if n.startswith(NATIVE_PREFIX) and not n.endswith("/")]


class JvmClient(ThinClientKind):
    name = "jvm"

    def make(self, ctx, cell, built: Path) -> ThinClient:
        jar, pom = built / jar_name(cell.mxnet), built / pom_name(cell.mxnet)
        if not (jar.is_file() and pom.is_file()):
            raise MxbuildError(f"cell {cell.id} ships {', '.join(cell.package_names)} but "
                               f"there is no thin jar + pom in {built}",
                               f"rebuild it: invoke build --cell {cell.id} --force-stage "
                               "recipe,package --publish none")
        return ThinClient(self.name, jar, cell.mxnet, sha256_file(jar), (pom,))

    def publish(self, storage, client: ThinClient) -> bool:
        return maven.publish_artifact(storage, coords(client.version), client.path,
                                      client.extra[0].read_bytes())

    def is_published(self, storage, client: ThinClient) -> bool:
        return maven.is_published(storage, coords(client.version), client.path,
                                  client.extra[0].read_bytes())


register(JvmClient())
