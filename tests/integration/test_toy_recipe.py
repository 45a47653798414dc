"""Structure for growth, for real: a recipe registered from this test module and a cell
that ships two packages go through the pipeline (image → recipe → package → publish),
`invoke plan`, repo.verify and apt — with no edit anywhere else."""
from __future__ import annotations

import copy
import dataclasses
import subprocess
from pathlib import Path

import pytest
import yaml

from mxbuild import matrix, options, pipeline, plan, recipes
from mxbuild.context import open_run
from mxbuild.fetch import sha256_file
from mxbuild.payload import Payload
from mxbuild.repo import ops
from mxbuild.repo.sign import Signer
from mxbuild.repo.storage import LocalStorage

from ..conftest import ROOT
from .conftest import apt_box, point_apt


def _so(path: Path, soname: str, source: str, *link: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # stripped and linked against libc, as lintian wants a shipped library
    subprocess.run(["gcc", "-shared", "-fPIC", "-s", "-o", str(path), "-x", "c", "-",
                    f"-Wl,-soname,{soname}", *link, "-Wl,--no-as-needed", "-lc"],
                   input=source, text=True, check=True)


class ToyRecipe(recipes.Recipe):
    """libmxnet.so and a JNI-like library that links it, compiled on the host."""
    name = "toy"

    def plan(self, ctx, cell):
        return "run", "toy recipe: two small libraries from gcc on the host"

    def produce(self, ctx, cell, images, logf):
        out = ctx.opts.work_dir / cell.id / "payload"
        _so(out / "libmxnet.so", "libmxnet.so",
            "int MXGetVersion(int *v) { *v = 10901; return 0; }")
        _so(out / "jni/libmxnet-toy.so", "libmxnet-toy.so",
            "int MXGetVersion(int *v); int toy(void) { int v; MXGetVersion(&v); return v; }",
            f"-L{out}", "-lmxnet")
        files = {rel: sha256_file(out / rel) for rel in ("libmxnet.so", "jni/libmxnet-toy.so")}
        logf.write("toy payload made\n")
        return recipes.Produced(Payload(out, files, {}, "the toy recipe", 1652763094,
                                        provenance=("The toy recipe made it.",)),
                                {"toy": {"files": len(files)}})


@pytest.fixture(scope="module")
def toy_matrix(tmp_path_factory):
    recipes.register(ToyRecipe())
    doc = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    doc["packages"]["libmxnet-toy"] = {
        "files": ["jni/*"], "depends_on": ["libmxnet"],
        "description": "Apache MXNet toy JNI library\nA second package of the cell, for tests."}
    cpu = copy.deepcopy(doc["variants"]["cpu"])
    cpu["builds"] = [dict(cpu["builds"][0], recipe="toy", distros=["debian12"],
                          packages=["libmxnet", "libmxnet-toy"])]
    doc["variants"] = {"cpu": cpu}
    path = tmp_path_factory.mktemp("toy") / "matrix.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_toy_recipe_and_two_packages_reach_plan_pipeline_repo_and_apt(
        docker_client, toy_matrix, gnupg_home, cell_images, tmp_path):
    opts = dataclasses.replace(       # the package stage really runs (no stage cache)
        options.resolve(out_dir=str(tmp_path / "out"), matrix=str(toy_matrix),
                        gnupg_home=str(gnupg_home)), force=frozenset({"package"}))
    (cell,) = matrix.load(toy_matrix).cells
    assert cell.recipe == "toy" and cell.package_names == ("libmxnet", "libmxnet-toy")
    storage = LocalStorage(tmp_path / "repo")

    steps = {s.stage: s for s in plan.plan(
        [cell], open_run(opts, docker=docker_client, storage=storage, gpu=False))}
    assert steps["recipe"].reason.startswith("toy recipe")
    assert "libmxnet, libmxnet-toy" in steps["package"].reason

    report = pipeline.build([cell], opts, storage=storage, do_smoke=False)
    record = report.cells[cell.id]
    assert [(s.name, s.status) for s in record.stages] == [
        ("image", "ok"), ("recipe", "ok"), ("package", "ok"), ("publish", "ok")]
    assert record.artifacts["toy"] == {"files": 2}               # the recipe's report keys
    debs = {d["package"]: d for d in record.artifacts["debs"]}
    assert set(debs) == {"libmxnet", "libmxnet-toy"}
    assert record.artifacts["deb"] == debs["libmxnet"]
    assert all(d["lintian"]["errors"] == 0 for d in debs.values())

    toy = Path(debs["libmxnet-toy"]["path"])
    fields = subprocess.run(["dpkg-deb", "-f", str(toy), "Depends", "Source"],
                            capture_output=True, text=True, check=True).stdout
    # the sibling at the exact version; dpkg-shlibdeps found libmxnet.so in the build tree
    # (its `>= 1.9.1` from libmxnet's symbols file, which the exact version subsumes)
    assert f"libmxnet (= {cell.deb_version})" in fields and "Source: libmxnet" in fields
    log = (Path(opts.logs_dir) / cell.id / "package.log").read_text()
    assert "shlibs:Depends=libc6 (>= 2.2.5), libmxnet (>= 1.9.1)" in log
    listing = subprocess.run(["dpkg-deb", "-c", str(toy)], capture_output=True, text=True,
                             check=True).stdout
    assert "x86_64-linux-gnu/jni/libmxnet-toy.so" in listing and "libmxnet.so" not in listing

    keyring = Signer(gnupg_home).public_keyring()
    assert ops.verify(storage, keyring) == []
    assert ops.list_repo(storage, keyring).suites == {"bookworm": {"cpu": [
        ("libmxnet", cell.deb_version), ("libmxnet-toy", cell.deb_version)]}}

    from mxbuild.smoke import serve_directory
    with serve_directory(storage.root) as url, \
            apt_box(docker_client, cell_images[2].ref, keyring, tmp_path) as box:
        point_apt(box, url)
        box.run(["apt-get", "update"])
        box.run(["apt-get", "install", "-y", "--no-install-recommends", "libmxnet-toy"],
                env={"DEBIAN_FRONTEND": "noninteractive"})
        out = box.run(["dpkg-query", "-W", "libmxnet", "libmxnet-toy"]).output
    assert out.split() == ["libmxnet", cell.deb_version, "libmxnet-toy", cell.deb_version]


def test_a_payload_file_no_package_holds_is_refused_by_name(toy_matrix, tmp_path):
    from mxbuild import deb
    from mxbuild.errors import MxbuildError
    cell = matrix.load(toy_matrix).cells[0]
    payload = Payload(tmp_path, {"libmxnet.so": "0" * 64, "jni/x.so": "0" * 64,
                                 "etc/stray.conf": "0" * 64}, {}, "t", 1)
    with pytest.raises(MxbuildError) as info:
        deb.split_payload(cell, payload)
    assert "etc/stray.conf" in info.value.message and "packages.<name>.files" in info.value.hint
    one = Payload(tmp_path, {"libmxnet.so": "0" * 64}, {}, "t", 1)
    with pytest.raises(MxbuildError, match="produced nothing for libmxnet-toy"):
        deb.split_payload(cell, one)
