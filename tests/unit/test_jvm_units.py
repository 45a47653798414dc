"""The JVM half without Docker: the thin jar and its POM, the maven recipe's download
checks (sha256 pin and the repository's own .sha1), the jar pin in the schema."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import zipfile

import pytest

from mxbuild import jvm_client, matrix, options
from mxbuild.context import open_run
from mxbuild.errors import ChecksumError, DownloadError, MatrixError, MxbuildError
from mxbuild.recipes import maven
from mxbuild.recipes.maven import JarPin

from ..conftest import dump_yaml
from ..require import skip_or_fail

UPSTREAM_POM = b"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>org.apache.mxnet</groupId>
  <artifactId>mxnet-full_2.11-linux-x86_64-cpu</artifactId>
  <version>1.5.1</version>
  <dependencies>
    <dependency><groupId>org.scala-lang</groupId><artifactId>scala-library</artifactId>
      <version>2.11.8</version></dependency>
    <dependency><groupId>org.scala-lang</groupId><artifactId>scala-reflect</artifactId>
      <version>2.11.8</version></dependency>
    <dependency><groupId>org.scala-lang</groupId><artifactId>scala-compiler</artifactId>
      <version>2.11.8</version></dependency>
    <dependency><groupId>commons-io</groupId><artifactId>commons-io</artifactId>
      <version>2.1</version></dependency>
    <dependency><groupId>junit</groupId><artifactId>junit</artifactId>
      <version>4.13.2</version><scope>test</scope></dependency>
  </dependencies>
</project>
"""


def full_jar(path, natives=("libmxnet.so", "libmxnet-scala.so", "libgfortran.so.3")):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("META-INF/", (2019, 9, 30, 2, 16, 0)), b"")
        zf.writestr(zipfile.ZipInfo("META-INF/MANIFEST.MF", (2019, 9, 30, 2, 16, 0)),
                    b"Manifest-Version: 1.0\n")
        zf.writestr(zipfile.ZipInfo("org/apache/mxnet/Base.class", (2019, 9, 30, 2, 16, 2)),
                    b"\xca\xfe\xba\xbe classes")
        zf.writestr(zipfile.ZipInfo("lib/", (2019, 9, 30, 2, 16, 0)), b"")
        zf.writestr(zipfile.ZipInfo("lib/native/", (2019, 9, 30, 2, 16, 0)), b"")
        for n in natives:
            zf.writestr(zipfile.ZipInfo(f"lib/native/{n}", (2019, 9, 30, 2, 16, 0)), b"ELF" + n.encode())
    return path


def test_thin_jar_is_the_jar_without_native_code_and_reproducible(tmp_path):
    full = full_jar(tmp_path / "full.jar")
    one = jvm_client.thin_jar(full, tmp_path / "a" / "thin.jar")
    two = jvm_client.thin_jar(full, tmp_path / "b" / "thin.jar")
    assert one.read_bytes() == two.read_bytes()
    with zipfile.ZipFile(one) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == ["META-INF/", "META-INF/MANIFEST.MF",
                                           "org/apache/mxnet/Base.class"]
    assert infos[2].date_time == (2019, 9, 30, 2, 16, 2)
    assert jvm_client.native_members(one) == [] and len(jvm_client.native_members(full)) == 3


def test_thin_pom_names_upstreams_runtime_dependencies_only():
    deps = jvm_client.runtime_dependencies(UPSTREAM_POM, "upstream.pom")
    assert [(d.group_id, d.artifact_id, d.version) for d in deps] == [
        ("org.scala-lang", "scala-library", "2.11.8"), ("commons-io", "commons-io", "2.1")]
    pom = jvm_client.render_pom("1.5.1", deps, "test")
    assert jvm_client.runtime_dependencies(pom, "ours") == deps
    assert b"<groupId>org.mxbuild</groupId>" in pom and b"<artifactId>mxnet-thin_2.11" in pom
    with pytest.raises(MxbuildError, match="no literal version"):
        jvm_client.runtime_dependencies(UPSTREAM_POM.replace(b"<version>2.1</version>",
                                                             b"<version>${io}</version>"), "x")
    with pytest.raises(MxbuildError, match="not a readable POM"):
        jvm_client.runtime_dependencies(b"<project>", "broken.pom")


def _repo(tmp_path, jar, pom=UPSTREAM_POM, sha1=None):
    pin = JarPin("org.apache.mxnet", "mxnet-full_2.11-linux-x86_64-cpu", "1.5.1",
                 hashlib.sha256(jar.read_bytes()).hexdigest(), ("libgfortran.so.3",),
                 (tmp_path / "central").as_uri())
    d = tmp_path / "central/org/apache/mxnet/mxnet-full_2.11-linux-x86_64-cpu/1.5.1"
    d.mkdir(parents=True, exist_ok=True)
    (d / pin.filename).write_bytes(jar.read_bytes())
    (d / (pin.filename + ".sha1")).write_text(
        sha1 or hashlib.sha1(jar.read_bytes()).hexdigest())
    (d / f"{pin.artifact}-1.5.1.pom").write_bytes(pom)
    (d / f"{pin.artifact}-1.5.1.pom.sha1").write_text(hashlib.sha1(pom).hexdigest())
    return pin, d


def _ctx(tmp_path):
    opts = dataclasses.replace(options.resolve(out_dir=str(tmp_path / "out")),
                               cache_dir=tmp_path / "cache")
    return open_run(opts, gpu=False)


def test_fetch_checks_the_pin_and_the_repositorys_sha1(tmp_path):
    jar = full_jar(tmp_path / "full.jar")
    pin, d = _repo(tmp_path, jar)
    log = io.StringIO()
    got, pom = maven.fetch_jar(_ctx(tmp_path), pin, log)
    assert got.read_bytes() == jar.read_bytes() and pom == UPSTREAM_POM
    assert "and the repository .sha1" in log.getvalue()
    with pytest.raises(ChecksumError, match="sha256 is"):          # the pin is wrong
        maven.fetch_jar(_ctx(tmp_path / "other"), dataclasses.replace(pin, sha256="0" * 64),
                        log)


def test_a_sha1_that_disagrees_or_is_missing_stops_the_recipe(tmp_path):
    jar = full_jar(tmp_path / "full.jar")
    pin, d = _repo(tmp_path, jar, sha1="0" * 40)
    with pytest.raises(ChecksumError, match="repository's .sha1 says 0000"):
        maven.fetch_jar(_ctx(tmp_path), pin, io.StringIO())
    (d / (pin.filename + ".sha1")).unlink()
    with pytest.raises(DownloadError, match=r"\.sha1"):
        maven.fetch_jar(_ctx(tmp_path / "again"), pin, io.StringIO())


def test_the_jar_pin_is_validated_and_the_recipe_needs_it(tmp_path, matrix_doc):
    doc = copy.deepcopy(matrix_doc)
    build = doc["variants"]["cpu"]["builds"][0]
    build.update(recipe="maven", packages=["libmxnet", "libmxnet-scala"])
    path = tmp_path / "matrix.yaml"
    path.write_text(dump_yaml(doc))
    with pytest.raises(MatrixError) as info:
        matrix.load(path)
    assert "builds[0].recipe" in info.value.message and "no jar pin" in info.value.message
    build["jar"] = {"group": "org.apache.mxnet", "artifact": "mxnet-full_2.11-linux-x86_64-cpu",
                    "version": "1.5.1", "sha256": "abc"}
    path.write_text(dump_yaml(doc))
    with pytest.raises(MatrixError, match=r"jar\.sha256: 'abc' is malformed"):
        matrix.load(path)
    build["jar"]["sha256"] = "a" * 64
    path.write_text(dump_yaml(doc))
    cell = matrix.load(path).select(cell="1.9.1-cpu-debian12")[0]
    assert cell.recipe == "maven"
    assert maven.jar_pin(cell).repository == "https://repo1.maven.org/maven2"
    assert cell.package_names == ("libmxnet", "libmxnet-scala")


def test_wheel_jvm_adds_the_jvm_package_and_names_what_the_matrix_lacks(tmp_path, matrix_doc):
    """--recipe wheel-jvm / compile-jvm: the cell also ships the matrix's package for the JVM
    client; a matrix without jvm_build or without such a package is a clear error."""
    from mxbuild import recipes
    from mxbuild.errors import SelectionError
    m = matrix.load(_write(tmp_path, matrix_doc))
    cell = m.select(cell="1.9.1-cpu-debian12")[0]
    assert cell.package_names == ("libmxnet",)
    for name in ("wheel-jvm", "compile-jvm"):
        adapted = recipes.with_recipe(cell, name, m.packages)
        assert adapted.recipe == name
        assert adapted.package_names == ("libmxnet", "libmxnet-scala")
        assert recipes.get(name).takes_source
    doc = copy.deepcopy(matrix_doc)
    del doc["jvm_build"]
    bare = matrix.load(_write(tmp_path, doc))
    with pytest.raises(SelectionError) as info:
        recipes.with_recipe(bare.select(cell="1.9.1-cpu-debian12")[0], "wheel-jvm",
                            bare.packages)
    assert "no jvm_build" in info.value.message and "openjdk-8-jdk-headless" in info.value.hint
    doc = copy.deepcopy(matrix_doc)
    del doc["packages"]["libmxnet-scala"]
    no_jvm = matrix.load(_write(tmp_path, doc))
    with pytest.raises(SelectionError, match="no package for the JVM client"):
        recipes.with_recipe(no_jvm.select(cell="1.9.1-cpu-debian12")[0], "wheel-jvm",
                            no_jvm.packages)


def _write(tmp_path, doc):
    """matrix.yaml of `doc` in tmp_path (overwritten by each call)."""
    path = tmp_path / "matrix.yaml"
    path.write_text(dump_yaml(doc))
    return path


def test_truststore_is_a_jks_keytool_reads_with_every_certificate(tmp_path):
    """The JKS written for Maven in the JVM build container, read back by the JDK's own
    keytool: every certificate of the PEM bundles is a trusted entry, the integrity
    check (password) passes."""
    import shutil
    import subprocess
    from mxbuild import truststore
    keytool = shutil.which("keytool")
    if keytool is None:
        skip_or_fail("tools", "no JDK keytool (setup.sh installs default-jdk-headless)")
    system = options.SYSTEM_CA_BUNDLE.read_text()
    certs = truststore.pem_certificates(system, "")
    assert len(certs) > 50
    store = tmp_path / "truststore.jks"
    store.write_bytes(truststore.jks(certs))
    listed = subprocess.run([keytool, "-list", "-keystore", str(store), "-storetype", "JKS",
                             "-storepass", truststore.PASSWORD], capture_output=True,
                            text=True, check=True).stdout
    assert f"contains {len(certs)} entries" in listed
    assert listed.count("trustedCertEntry") == len(certs)
    wrong = subprocess.run([keytool, "-list", "-keystore", str(store), "-storetype", "JKS",
                            "-storepass", "not-the-password"], capture_output=True, text=True)
    assert wrong.returncode != 0          # the SHA-1 integrity check is real
