import copy
import re

import pytest
from debian.debian_support import Version

from mxbuild import matrix
from mxbuild.errors import MatrixError, SelectionError

from ..conftest import ROOT, dump_yaml


def test_real_matrix_loads_into_frozen_cells():
    m = matrix.load(ROOT / "matrix.yaml")
    ids = [c.id for c in m.cells]
    assert "1.9.1-cpu-debian12" in ids
    cell = next(c for c in m.cells if c.id == "1.9.1-cpu-debian12")
    assert (cell.mxnet, cell.variant, cell.cuda, cell.distro.name, cell.codename, cell.recipe) \
        == ("1.9.1", "cpu", None, "debian12", "bookworm", "wheel")
    assert cell.official_wheel.name == "mxnet" and len(cell.official_wheel.sha256) == 64
    assert cell.deb_version == "1.9.1-6~deb12"
    with pytest.raises(AttributeError):
        cell.variant = "cu112"
    assert set(cell.summary()) >= {"id", "mxnet", "variant", "cuda", "distro", "codename",
                                   "recipe"}


def _del(path):
    def mutate(doc):
        *parents, last = path
        node = doc
        for p in parents:
            node = node[p]
        del node[last]
    return mutate


def _set(path, value):
    def mutate(doc):
        *parents, last = path
        node = doc
        for p in parents:
            node = node[p]
        node[last] = value
    return mutate


D12 = ["distros", "debian12"]
BUILD0 = ["variants", "cpu", "builds", 0]


def _duplicate_build(doc):
    doc["variants"]["cpu"]["builds"].append(copy.deepcopy(doc["variants"]["cpu"]["builds"][0]))


def _add_cuda_variant(cuda):
    def mutate(doc):
        v = copy.deepcopy(doc["variants"]["cpu"])
        v["cuda"] = cuda
        doc["variants"]["cu112"] = v
    return mutate


def _both_bases(doc):
    doc["distros"]["debian12"]["base"]["image"] = "debian@sha256:" + "a" * 64


BAD = [
    ("unknown-top-key", _set(["colour"], "blue"), "colour", "unknown key"),
    ("schema-version", _set(["schema"], 1), "schema", "is 1"),
    ("missing-maintainer", _del(["package", "maintainer"]), "package.maintainer", "missing"),
    ("revision-not-int", _set(["package", "revision"], "one"), "package.revision", "'one'"),
    ("duplicate-codename", lambda d: d["distros"].__setitem__("ubuntu17", d["distros"]["debian12"]),
     "distros.ubuntu17.codename", "also the codename of distros.debian12"),
    ("codename-malformed", _set(D12 + ["codename"], "Bookworm 12"), "distros.debian12.codename",
     "malformed"),
    ("distro-name-malformed", lambda d: d["distros"].__setitem__("Debian-12", d["distros"]["debian12"]),
     "distros.Debian-12", "malformed"),
    ("family-missing", _del(D12 + ["family"]), "distros.debian12.family", "missing"),
    ("package-files-missing", _del(["packages", "libmxnet", "files"]), "packages.libmxnet.files",
     "missing"),
    ("build-ships-undefined-package", _set(BUILD0 + ["packages"], ["libmxnet", "libfoo"]),
     "variants.cpu.builds[0].packages[1]", "not defined under packages"),
    ("package-client-unknown", _set(["packages", "libmxnet", "client"], "cobol"),
     "packages.libmxnet.client", "'cobol'"),
    ("both-bases", _both_bases, "distros.debian12.base", "exactly one"),
    ("image-with-spaces", lambda d: d["distros"]["debian12"].__setitem__(
        "base", {"image": "debian bookworm"}), "distros.debian12.base.image", "malformed"),
    ("short-fingerprint", _set(D12 + ["base", "bootstrap", "key_fingerprint"], "B7C5D7D6350947F8"),
     "distros.debian12.base.bootstrap.key_fingerprint", "malformed"),
    ("variant-name", lambda d: d["variants"].__setitem__("gpu", d["variants"].pop("cpu")),
     "variants.gpu", "malformed"),
    ("cpu-with-cuda", _set(["variants", "cpu", "cuda"], "11.2"), "variants.cpu.cuda", "'11.2'"),
    ("cuda-name-mismatch", _add_cuda_variant("11.0"), "variants.cu112.cuda", "does not match"),
    ("cuda-as-float", _add_cuda_variant(11.2), "variants.cu112.cuda", "11.2"),
    ("mxnet-as-float", _set(BUILD0 + ["mxnet"], 1.9), "variants.cpu.builds[0].mxnet", "float"),
    ("unknown-recipe", _set(BUILD0 + ["recipe"], "conda"), "variants.cpu.builds[0].recipe",
     "'conda'"),
    ("wheel-missing", _del(BUILD0 + ["wheel"]), "variants.cpu.builds[0].wheel", "missing"),
    ("sha256-short", _set(BUILD0 + ["wheel", "sha256"], "abc"),
     "variants.cpu.builds[0].wheel.sha256", "malformed"),
    ("undefined-distro", _set(BUILD0 + ["distros"], ["debian12", "debian99"]),
     "variants.cpu.builds[0].distros[1]", "not defined"),
    ("duplicate-cell", _duplicate_build, "variants.cpu.builds[3].distros[0]", "defined twice"),
    ("keyring-package-sha", _set(D12 + ["base", "bootstrap", "keyring_package"],
                                 {"url": "http://archive.example/k.deb", "sha256": "abc"}),
     "distros.debian12.base.bootstrap.keyring_package.sha256", "malformed"),
    ("numpy-compat-not-bool", _set(D12 + ["smoke", "numpy_compat"], "yes"),
     "distros.debian12.smoke.numpy_compat", "'yes'"),
    ("wheel-deps-not-bool", _set(D12 + ["smoke", "wheel_deps"], "no"),
     "distros.debian12.smoke.wheel_deps", "'no'"),
    ("abi-unquoted", _set(D12 + ["abi"], {"glibc": 2.36, "glibcxx": "3.4.30"}),
     "distros.debian12.abi.glibc", "2.36"),
    ("source-without-checksum", _set(["sources", "1.9.1"], {"url": "https://a.example/x.tar.gz"}),
     "sources.1.9.1", "no checksum"),
    ("source-sha512-short", _set(["sources", "1.9.1", "sha512"], "abc"),
     "sources.1.9.1.sha512", "malformed"),
    ("source-signature-without-keys", _set(["sources", "1.9.1"], {
        "url": "https://a.example/x.tar.gz", "sha256": "a" * 64, "signature": "https://a/x.asc"}),
     "sources.1.9.1", "only one of signature / keys"),
    ("compile-build-on-unknown", _set(["variants", "cpu", "compile"],
                                      {"preset": "linux_cpu", "build_on": "debian99"}),
     "variants.cpu.compile.build_on", "debian99"),
    ("compile-toolkit-both", _set(["variants", "cpu", "compile"],
                                  {"preset": "linux_cpu",
                                   "toolkit": {"image": "nvidia/cuda:11.2.2-devel",
                                               "package": "nvidia-cuda-toolkit"}}),
     "variants.cpu.compile.toolkit", "exactly one"),
    ("compile-recipe-without-preset", _set(["variants", "cu90", "builds", 0, "recipe"], "compile"),
     "variants.cu90.builds[0].recipe", "has no compile preset"),
    ("runtime-packages-not-sonames", _set(["variants", "cpu", "runtime_packages"],
                                          {"cudart": "cuda-cudart-9-0"}),
     "variants.cpu.runtime_packages", "cudart"),
    ("features-not-bool", _set(["variants", "cpu", "features", "CUDA"], "no"),
     "variants.cpu.features.CUDA", "'no'"),
]


@pytest.mark.parametrize("name,mutate,key_path,fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_matrix_is_rejected_with_file_and_key_path(tmp_path, matrix_doc, name, mutate,
                                                       key_path, fragment):
    mutate(matrix_doc)
    path = tmp_path / "matrix.yaml"
    path.write_text(dump_yaml(matrix_doc))
    with pytest.raises(MatrixError) as info:
        matrix.load(path)
    err = info.value
    assert err.exit_code == 3
    assert err.path == str(path)
    assert err.key_path == key_path
    assert fragment in err.message
    assert err.render().startswith(f"error: {path}: {key_path}")
    assert "fix: expected" in err.render()


# The CUDA sonames the official libmxnet.so of each GPU variant NEEDs (readelf -d; checked
# on the cu110, cu112 and cu117 1.9.1 wheels here): libc/libstdc++/libgomp come from the
# distro, libopenblas/libgfortran/libquadmath are bundled; every other one must be mapped.
_CUDA11 = {"libcuda.so.1", "libcudart.so.11.0", "libcublas.so.11", "libcufft.so.10",
           "libcurand.so.10", "libcudnn.so.8", "libnccl.so.2", "libnvToolsExt.so.1"}
NEEDED_CUDA = {
    "cu90": {"libcuda.so.1", "libcudart.so.9.0", "libcublas.so.9.0", "libcufft.so.9.0",
             "libcurand.so.9.0", "libcusolver.so.9.0", "libnvrtc.so.9.0"},
    "cu92": {"libcuda.so.1", "libcudart.so.9.2", "libcublas.so.9.2", "libcufft.so.9.2",
             "libcurand.so.9.2", "libcusolver.so.9.2", "libnvrtc.so.9.2",
             "libnvToolsExt.so.1"},
    "cu101": {"libcuda.so.1", "libcudart.so.10.1", "libcublas.so.10", "libcufft.so.10",
              "libcurand.so.10", "libcusolver.so.10", "libnvrtc.so.10.1", "libcudnn.so.7",
              "libnccl.so.2", "libnvToolsExt.so.1"},
    "cu102": {"libcuda.so.1", "libcudart.so.10.2", "libcublas.so.10", "libcufft.so.10",
              "libcurand.so.10", "libcusolver.so.10", "libnvrtc.so.10.2", "libcudnn.so.8",
              "libnccl.so.2", "libnvToolsExt.so.1"},
    "cu110": _CUDA11 | {"libcusolver.so.10", "libnvrtc.so.11.0"},
    "cu111": _CUDA11 | {"libcusolver.so.11", "libcusparse.so.11", "libnvrtc.so.11.1"},
    "cu112": _CUDA11 | {"libcusolver.so.11", "libnvrtc.so.11.2"},
    **{v: _CUDA11 | {"libcusolver.so.11", "libcusparse.so.11", "libnvrtc.so.11.2"}
       for v in ("cu113", "cu114", "cu115", "cu116", "cu117")},
}
# packages that carry no CUDA version in their name (one per soname major)
UNVERSIONED = {"libcudnn.so.7": "libcudnn7", "libcudnn.so.8": "libcudnn8",
               "libnccl.so.2": "libnccl2", "libcublas.so.10": "libcublas10"}


def test_gpu_cells_map_every_cuda_soname():
    m = matrix.load(ROOT / "matrix.yaml")
    gpu = [c for c in m.cells if c.cuda]
    assert {c.variant for c in gpu} == set(NEEDED_CUDA)
    for cell in gpu:
        runtime = dict(cell.runtime_packages)
        assert set(runtime) == NEEDED_CUDA[cell.variant], cell.id
        assert runtime["libcuda.so.1"] == "driver", cell.id      # the host's driver
        version = cell.cuda.replace(".", "-")                     # 11.2 -> 11-2
        for soname, package in runtime.items():
            if soname == "libcuda.so.1":
                continue
            expected = UNVERSIONED.get(soname)
            if expected:
                assert package == expected, (cell.id, soname, package)
            else:   # NVIDIA's repository names them per toolkit: cuda-cudart-11-2, libcufft-11-2
                assert re.fullmatch(rf"(cuda-|lib)[a-z]+-{version}", package), \
                    (cell.id, soname, package)
    (cu90,) = m.select(cuda="9", distro="ubuntu16")
    assert dict(cu90.runtime_packages)["libcudart.so.9.0"] == "cuda-cudart-9-0"
    assert cu90.official_wheel.name == "mxnet-cu90" and cu90.cuda == "9.0"


def test_x_keys_hold_anchors_only(tmp_path, matrix_doc):
    """Top-level x-… keys are where YAML anchors live: what they hold reaches the matrix
    through aliases only, the key itself is no part of it, and below the top level an x-
    key is an unknown key like any other."""
    real = matrix.load(ROOT / "matrix.yaml")
    # the anchor is resolved: every GPU variant reads x-gpu-features' values…
    gpu_features = {"CUDA": True, "CUDNN": True, "NCCL": True, "MKLDNN": True,
                    "BLAS_OPEN": True, "LAPACK": True, "OPENMP": True, "SIGNAL_HANDLER": True}
    assert {c.id: dict(c.features) for c in real.cells if c.cuda} == \
        {c.id: gpu_features for c in real.cells if c.cuda}
    # …and follows an edit of the anchored block (one edit, every GPU cell)
    text = (ROOT / "matrix.yaml").read_text()
    block = text.index("x-gpu-features: &gpu_features")
    edited = text[:block] + text[block:].replace("  MKLDNN: true", "  MKLDNN: false", 1)
    (tmp_path / "edited.yaml").write_text(edited)
    after = matrix.load(tmp_path / "edited.yaml")
    before = {c.id: dict(c.features) for c in real.cells}
    assert {c.id: dict(c.features) for c in after.cells} == {
        cid: {**features, "MKLDNN": False} if features == gpu_features else features
        for cid, features in before.items()}
    # an x- key holding a whole distro adds nothing: same distros, same cells
    matrix_doc["x-debian99"] = copy.deepcopy(matrix_doc["distros"]["debian12"])
    matrix_doc["x-anything"] = {"free": "form"}
    path = tmp_path / "matrix.yaml"
    path.write_text(dump_yaml(matrix_doc))
    loaded = matrix.load(path)
    assert set(loaded.distros) == set(real.distros)
    assert [c.id for c in loaded.cells] == [c.id for c in real.cells]
    # below the top level an x- key is refused
    matrix_doc["distros"]["debian12"]["x-note"] = "a comment as a key"
    path.write_text(dump_yaml(matrix_doc))
    with pytest.raises(MatrixError, match="distros.debian12.x-note: unknown key"):
        matrix.load(path)


def test_ubuntu_distros_pin_their_keyring_package():
    m = matrix.load(ROOT / "matrix.yaml")
    for name, distro in m.distros.items():
        spec = distro.base.bootstrap
        if name.startswith("ubuntu"):
            assert spec.keyring_package is not None and len(spec.keyring_package.sha256) == 64
            assert spec.mirror.startswith("http://archive.ubuntu.com/")
        else:
            assert spec.keyring == "/usr/share/keyrings/debian-archive-keyring.gpg"


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "matrix.yaml"
    path.write_text("schema: 1\npackage: [unclosed\n")
    with pytest.raises(MatrixError, match="not valid YAML \\(line"):
        matrix.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(MatrixError, match="cannot be read"):
        matrix.load(tmp_path / "nope.yaml")


# ------------------------------------------------------------------ selectors

@pytest.fixture
def wide(matrix_doc):
    """The real matrix widened with GPU variants and a second distro, for selectors."""
    d = matrix_doc
    ubuntu = copy.deepcopy(d["distros"]["debian12"])
    ubuntu.update(codename="focal", version_tag="ubuntu20.04")
    d["distros"] = {"debian12": d["distros"]["debian12"], "ubuntu20": ubuntu}
    cpu = d["variants"]["cpu"]
    cpu["builds"] = cpu["builds"][:1]
    cpu["builds"][0]["distros"] = ["debian12"]
    d["variants"] = {"cpu": cpu}
    for name, cuda, version in (("cu90", "9.0", "1.6.0"), ("cu112", "11.2", "1.9.1"),
                                ("cu117", "11.7", "1.9.1")):
        v = copy.deepcopy(d["variants"]["cpu"])
        v["cuda"] = cuda
        v["builds"][0]["mxnet"] = version
        v["builds"][0]["distros"] = ["ubuntu20", "debian12"]
        d["variants"][name] = v
    return matrix.parse(d)


def ids(cells):
    return sorted(c.id for c in cells)


def test_select_everything_by_default(wide):
    assert len(wide.select()) == 7


def test_select_variant_distro_mxnet(wide):
    assert ids(wide.select(variant="cpu")) == ["1.9.1-cpu-debian12"]
    assert ids(wide.select(distro="ubuntu20", mxnet="1.9.1")) == [
        "1.9.1-cu112-ubuntu20", "1.9.1-cu117-ubuntu20"]
    assert ids(wide.select(variant="cpu,cu90", distro="debian12")) == [
        "1.6.0-cu90-debian12", "1.9.1-cpu-debian12"]


def test_select_cuda_major_and_minor(wide):
    assert ids(wide.select(cuda="9")) == ["1.6.0-cu90-debian12", "1.6.0-cu90-ubuntu20"]
    assert ids(wide.select(cuda="11.2", distro="ubuntu20")) == ["1.9.1-cu112-ubuntu20"]
    assert len(wide.select(cuda="11")) == 4
    assert ids(wide.select(cuda="none")) == ["1.9.1-cpu-debian12"]


def test_select_cell_glob_with_braces(wide):
    assert ids(wide.select(cell="1.9.1-cu11*-ubuntu2?")) == [
        "1.9.1-cu112-ubuntu20", "1.9.1-cu117-ubuntu20"]
    assert ids(wide.select(cell="*-cu{90,117}-debian12")) == [
        "1.6.0-cu90-debian12", "1.9.1-cu117-debian12"]
    assert ids(wide.select(cell="*-cpu-*,*-cu90-ubuntu20")) == [
        "1.6.0-cu90-ubuntu20", "1.9.1-cpu-debian12"]


@pytest.mark.parametrize("kwargs,flag", [
    ({"variant": "gpu"}, "--variant 'gpu'"),
    ({"distro": "ubuntu17"}, "--distro 'ubuntu17'"),
    ({"mxnet": "2.0.0"}, "--mxnet '2.0.0'"),
    ({"cuda": "10"}, "--cuda '10'"),
])
def test_unknown_selector_value_lists_the_valid_ones(wide, kwargs, flag):
    with pytest.raises(SelectionError) as info:
        wide.select(**kwargs)
    assert flag in info.value.message
    assert info.value.exit_code == 2
    assert "use one of:" in info.value.hint


def test_selector_lists_valid_values(wide):
    with pytest.raises(SelectionError) as info:
        wide.select(distro="ubuntu17")
    assert info.value.hint == "use one of: debian12, ubuntu20"


def test_malformed_cuda(wide):
    with pytest.raises(SelectionError, match="malformed"):
        wide.select(cuda="eleven")


def test_empty_selection_lists_the_cells(wide):
    with pytest.raises(SelectionError) as info:
        wide.select(variant="cpu", distro="ubuntu20")
    assert info.value.message == "the selection matches no cell"
    assert "1.9.1-cpu-debian12" in info.value.hint


def test_cell_globs_split_commas_and_expand_nested_braces():
    assert matrix.cell_globs("a{b,c{d,e}}f") == ["abf", "acdf", "acef"]
    assert matrix.cell_globs("plain") == ["plain"]
    assert matrix.cell_globs("x{1,2}y{a,b}") == ["x1ya", "x1yb", "x2ya", "x2yb"]
    assert matrix.cell_globs("*-cpu-*, 1.9.1-cu11{2,7}-*") == [
        "*-cpu-*", "1.9.1-cu112-*", "1.9.1-cu117-*"]
    assert matrix.cell_globs(None) == [] and matrix.cell_globs("") == []


# ------------------------------------------------------------------ versions

@pytest.mark.parametrize("upstream,rev,tag,expected", [
    ("1.9.1", 1, "deb12", "1.9.1-1~deb12"),
    ("1.6.0", 1, "ubuntu16.04", "1.6.0-1~ubuntu16.04"),
    ("1.6.0.post0", 2, "deb11", "1.6.0.post0-2~deb11"),
])
def test_deb_version(upstream, rev, tag, expected):
    assert matrix.deb_version(upstream, rev, tag) == expected


def test_deb_versions_sort_as_apt_sorts_them():
    # ~distro sorts below the plain revision, and revisions bump above older ones
    assert Version("1.9.1-1~deb12") < Version("1.9.1-1")
    assert Version("1.9.1-1~deb12") < Version("1.9.1-2~deb12")
    assert Version("1.9.1-2~deb12") < Version("1.10.0-1~deb12")
