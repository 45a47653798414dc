import subprocess
import sys

import pytest
from invoke import Exit

from mxbuild import errors
from mxbuild.entry import entrypoint

from ..conftest import ROOT, run_cli


# The exit codes users and CI scripts rely on (docs/reference/exit-codes.md): one per kind of
# failure; a subclass that refines a kind (a pool conflict is a repository error) keeps its
# parent's code.
EXIT_CODES = {"MxbuildError": 1, "SelectionError": 2, "MatrixError": 3, "ChecksumError": 4,
              "DockerEngineError": 5, "StageError": 6, "RepoError": 7,
              "PoolConflictError": 7, "SigningError": 8, "ImageError": 9, "ConfigError": 10,
              "DownloadError": 11, "AbiError": 12, "EmulationError": 13}


def _all_error_classes() -> set[type]:
    """MxbuildError and every subclass defined anywhere in the mxbuild package."""
    import importlib
    import pkgutil
    import mxbuild
    for module in pkgutil.walk_packages(mxbuild.__path__, "mxbuild."):
        importlib.import_module(module.name)
    found, todo = set(), [errors.MxbuildError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo += cls.__subclasses__()
    return found


def test_every_error_class_has_its_own_exit_code():
    classes = _all_error_classes()
    assert {c.__name__: c.exit_code for c in classes} == EXIT_CODES
    kinds = [c for c in classes if c.exit_code != getattr(c.__base__, "exit_code", None)]
    assert len({c.exit_code for c in kinds}) == len(kinds)      # no two kinds share one
    # a refinement is a subclass of the kind whose code it keeps
    assert errors.PoolConflictError.__base__ is errors.RepoError


def test_the_docs_list_every_exit_code():
    import re
    text = " ".join((ROOT / "docs/reference/exit-codes.md").read_text().split())
    listed = text.split("Exit codes: ", 1)[1].split(". ", 1)[0]
    assert [int(n) for n in re.findall(r"\b(\d+) [A-Za-z]", listed)] == \
        sorted(set(EXIT_CODES.values()) - {1})


def test_stage_error_names_cell_stage_and_log():
    err = errors.StageError("1.9.1-cpu-debian12", "package", "lintian reports 2 error(s)",
                            "out/logs/1.9.1-cpu-debian12/package.log", "read it")
    assert err.render() == ("error: cell 1.9.1-cpu-debian12, stage package: lintian reports "
                            "2 error(s) (log: out/logs/1.9.1-cpu-debian12/package.log)\n"
                            "  fix: read it")
    assert err.exit_code == 6


def test_docker_error_says_what_to_do():
    text = errors.DockerEngineError("no Docker engine answers at unix:///x.sock").render()
    assert "invoke setup" in text and "DOCKER_HOST" in text


def test_pool_conflict_hint_names_the_fix():
    assert "revision" in errors.PoolConflictError("exists").hint


def test_entrypoint_turns_errors_into_exit_codes(capsys):
    @entrypoint
    def task():
        raise errors.ChecksumError("wheel: sha256 is x, the pin says y", "delete it")
    with pytest.raises(Exit) as info:
        task()
    assert info.value.code == 4
    err = capsys.readouterr().err
    assert "error: wheel: sha256 is x, the pin says y" in err and "fix: delete it" in err


def _invoke(*args, env=None):
    """A real CLI process (one test proves the process exit code end to end)."""
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT,
                          capture_output=True, text=True, env=env)


def test_cli_unknown_selector_exits_2_and_lists_valid_values():
    proc = run_cli("matrix", "--distro", "ubuntu17")
    assert proc.returncode == 2
    assert "--distro 'ubuntu17' matches no cell" in proc.stderr
    from mxbuild import matrix
    names = sorted({c.distro.name for c in matrix.load(ROOT / "matrix.yaml").cells})
    assert f"use one of: {', '.join(names)}\n" in proc.stderr


def test_cli_matrix_error_exits_3(tmp_path):
    bad = tmp_path / "matrix.yaml"
    bad.write_text("schema: 2\npackage: {}\npackages: {}\narchitectures: {}\ndistros: {}\n"
                   "variants: {}\n")
    import os
    proc = _invoke("matrix", env={**os.environ, "MXBUILD_MATRIX": str(bad)})
    assert proc.returncode == 3
    assert f"{bad}: package.revision: missing" in proc.stderr


def test_cli_matrix_json():
    import json
    proc = run_cli("matrix", "--json", "--variant", "cpu")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {"id", "mxnet", "variant", "cuda", "distro", "codename", "recipe"} <= set(rows[0])
    assert all(r["variant"] == "cpu" for r in rows)


def test_cli_without_a_docker_engine_exits_5_and_says_what_to_do(tmp_path):
    import os
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock",
           "MXBUILD_OUT_DIR": str(tmp_path / "out")}
    proc = run_cli("build", "--variant", "cpu", env=env)
    assert proc.returncode == 5
    assert f"no Docker engine answers at unix://{tmp_path}/no-engine.sock" in proc.stderr
    assert "invoke setup" in proc.stderr


@pytest.mark.parametrize("recipe", ["wheel", "maven"])
def test_cli_a_harvesting_recipe_for_arm64_names_the_recipes_that_serve_it(tmp_path, recipe):
    """The official wheels and jars carry x86_64 natives only: asked for arm64 cells,
    `invoke build` stops before any image or stage (exit 2, nothing written) and names the
    recipes that cross-compile them."""
    import os
    env = {**os.environ, "MXBUILD_OUT_DIR": str(tmp_path / "out"),
           "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}   # never reached
    proc = run_cli("build", "--arch", "arm64", "--recipe", recipe, env=env)
    assert proc.returncode == 2, proc.stderr
    assert f"recipe {recipe} cannot build arm64" in proc.stderr
    assert "x86_64" in proc.stderr and "not aarch64" in proc.stderr
    assert "fix: arm64 cells are built by recipe compile or compile-jvm" in proc.stderr
    assert not (tmp_path / "out").exists()
