import copy
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite golden files from the current output")


@pytest.fixture
def golden(request):
    """golden(name, text): compare with tests/unit/golden/<name>, or rewrite it."""
    update = request.config.getoption("--update-golden")

    def check(name: str, text: str):
        path = ROOT / "tests/unit/golden" / name
        if update or not path.exists():
            if not update:
                pytest.fail(f"golden file {path} is missing: run pytest --update-golden")
            path.write_text(text)
        assert text == path.read_text(), f"{name} differs from its golden file " \
                                         "(if intended: pytest --update-golden)"
    return check


@pytest.fixture
def matrix_doc():
    """A fresh copy of the real matrix.yaml as a Python structure."""
    return copy.deepcopy(yaml.safe_load((ROOT / "matrix.yaml").read_text()))


def make_deb(tmp: Path, name: str, version: str, payload: bytes = b"x", depends: str = "") -> Path:
    """A tiny real .deb built with the host's dpkg-deb (for repository tests)."""
    root = tmp / f"{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/doc" / name).mkdir(parents=True)
    (root / "usr/share/doc" / name / "payload").write_bytes(payload)
    control = (f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n"
               f"Maintainer: mxbuild tests <tests@example.org>\n"
               + (f"Depends: {depends}\n" if depends else "")
               + f"Description: test package {name}\n a package made by the tests\n")
    (root / "DEBIAN/control").write_text(control)
    out = tmp / f"{name}_{version}_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)],
                   check=True, capture_output=True)
    shutil.rmtree(root)
    return out


@pytest.fixture(scope="session")
def gnupg_home(tmp_path_factory):
    """A throwaway signing key directory (the key is generated on first use)."""
    return tmp_path_factory.mktemp("gnupg")
