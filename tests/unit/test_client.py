"""The thin client wheel and its PEP 503 index, without Docker: built from a small wheel
laid out like MXNet's, installed by a real pip into a real venv, loading a real shared
library from the system fallback path."""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from mxbuild import client
from mxbuild.errors import PoolConflictError
from mxbuild.repo.storage import LocalStorage

LIBINFO = '''import os
import platform
import logging


def find_lib_path(prefix='libmxnet'):
    lib_from_env = os.environ.get('MXNET_LIBRARY_PATH')
    if lib_from_env and os.path.isfile(lib_from_env):
        return [lib_from_env]
    curr_path = os.path.dirname(os.path.abspath(os.path.expanduser(__file__)))
    dll_path = [os.path.join(curr_path, prefix + '.so')]
    lib_path = [p for p in dll_path if os.path.exists(p) and os.path.isfile(p)]
    if len(lib_path) == 0:
        raise RuntimeError('Cannot find the MXNet library.')
    return lib_path
'''


def official_wheel(tmp: Path, version="9.9.9") -> Path:
    """A wheel shaped like mxnet's: package, native libraries, dist-info with RECORD."""
    path = tmp / f"mxnet-{version}-py3-none-manylinux2014_x86_64.whl"
    dist = f"mxnet-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in [
            ("mxnet/__init__.py", "from .libinfo import find_lib_path\n"),
            ("mxnet/libinfo.py", LIBINFO),
            ("mxnet/libmxnet.so", b"\x7fELF native"),
            ("mxnet/libopenblas.so.0", b"\x7fELF blas"),
            ("mxnet/include/mxnet/c_api.h", "/* header */\n"),
            ("dmlc_tracker/__init__.py", ""),
            (f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: mxnet\nVersion: {version}\n"
                                 "Summary: Apache MXNet\nRequires-Dist: numpy (<2.0.0,>1.16.0)\n"
                                 "\nlong description\n"),
            (f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: bdist_wheel\n"
                              "Root-Is-Purelib: true\nTag: py3-none-manylinux2014_x86_64\n"),
            (f"{dist}/top_level.txt", "dmlc_tracker\nmxnet\n"),
            (f"{dist}/RECORD", "stale\n"),
        ]:
            zf.writestr(zipfile.ZipInfo(name, (2022, 5, 17, 4, 51, 0)), data)
    return path


def test_thin_wheel_drops_native_libraries_and_renames_the_distribution(tmp_path):
    thin = client.build_thin_wheel(official_wheel(tmp_path), tmp_path / "out")
    assert thin.name == "mxnet_thin-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(thin) as zf:
        names = zf.namelist()
        assert not [n for n in names if ".so" in n]
        assert "mxnet/include/mxnet/c_api.h" in names and "dmlc_tracker/__init__.py" in names
        assert "mxnet_thin-9.9.9.dist-info/RECORD" == names[-1]
        meta = zf.read("mxnet_thin-9.9.9.dist-info/METADATA").decode()
        assert re.search(r"^Name: mxnet-thin$", meta, re.M) and "long description" in meta
        assert "Requires-Dist: numpy" in meta
        assert "Tag: py3-none-any" in zf.read("mxnet_thin-9.9.9.dist-info/WHEEL").decode()
        record = zf.read("mxnet_thin-9.9.9.dist-info/RECORD").decode()
        assert "stale" not in record and "mxnet/libinfo.py,sha256=" in record
        assert "mxnet-thin (mxbuild)" in zf.read("mxnet/libinfo.py").decode()


def test_thin_wheel_is_byte_identical_on_rebuild(tmp_path):
    wheel = official_wheel(tmp_path)
    a = client.build_thin_wheel(wheel, tmp_path / "a").read_bytes()
    b = client.build_thin_wheel(wheel, tmp_path / "b").read_bytes()
    assert a == b


def test_pip_installs_it_and_it_finds_the_system_library(tmp_path):
    """A real venv and pip; the patched libinfo falls back to the system library
    directories (here a stand-in, since this host has no libmxnet .deb). The venv gets no
    pip of its own (seconds to install); this pip installs into it (--python)."""
    thin = client.build_thin_wheel(official_wheel(tmp_path), tmp_path / "out")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"),
                    "install", "--no-deps", "--no-index", "--disable-pip-version-check", "-q",
                    str(thin)], check=True)
    shown = subprocess.run([str(venv / "bin/python"), "-c", "import importlib.metadata as m; "
                            "print(m.version('mxnet-thin'), m.distribution('mxnet-thin')"
                            ".locate_file(''))"], capture_output=True, text=True,
                           check=True).stdout.split()
    assert shown[0] == "9.9.9" and shown[1].startswith(str(venv))      # installed in the venv
    probe = ("import sys, mxnet.libinfo as li\n"
             "try:\n    li.find_lib_path()\nexcept RuntimeError as e:\n"
             "    print('ERR', e)\n")
    out = subprocess.run([str(venv / "bin/python"), "-c", probe], capture_output=True,
                         text=True, cwd=tmp_path).stdout
    assert "apt-get install libmxnet" in out and "/usr/lib/" in out
    # with MXNET_LIBRARY_PATH the upstream search still comes first
    lib = tmp_path / "libmxnet.so"
    lib.write_bytes(b"x")
    out = subprocess.run([str(venv / "bin/python"), "-c",
                          "import mxnet.libinfo as li; print(li.find_lib_path())"],
                         capture_output=True, text=True, env={"MXNET_LIBRARY_PATH": str(lib)},
                         cwd=tmp_path).stdout
    assert str(lib) in out


def test_index_lists_every_wheel_with_its_sha256_and_refuses_other_bytes(tmp_path):
    storage = LocalStorage(tmp_path / "repo")
    a = client.build_thin_wheel(official_wheel(tmp_path, "9.9.9"), tmp_path / "a")
    b = client.build_thin_wheel(official_wheel(tmp_path, "9.9.8"), tmp_path / "b")
    assert client.publish_thin(storage, a) is True
    assert client.publish_thin(storage, a) is False      # idempotent
    assert client.publish_thin(storage, b) is True
    page = (tmp_path / "repo/simple/mxnet-thin/index.html").read_text()
    for wheel in (a, b):
        sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
        assert f'href="{wheel.name}#sha256={sha}"' in page
    assert 'href="mxnet-thin/"' in (tmp_path / "repo/simple/index.html").read_text()
    other = tmp_path / "other" / a.name
    other.parent.mkdir()
    other.write_bytes(a.read_bytes() + b"tampered")
    with pytest.raises(PoolConflictError):
        client.publish_thin(storage, other)


def test_concurrent_publishers_lose_no_wheel(tmp_path):
    storage = LocalStorage(tmp_path / "repo")
    wheels = [client.build_thin_wheel(official_wheel(tmp_path / str(i), f"9.9.{i}"),
                                      tmp_path / f"w{i}")
              for i in range(8) if (tmp_path / str(i)).mkdir() is None]
    threads = [threading.Thread(target=client.publish_thin, args=(storage, w)) for w in wheels]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    page = (tmp_path / "repo/simple/mxnet-thin/index.html").read_text()
    assert all(w.name in page for w in wheels)


def test_pip_arguments_trust_only_a_plain_http_host():
    args = client.pip_install_args("http://127.0.0.1:8080/simple/", "1.9.1")
    assert args[-1] == "mxnet-thin==1.9.1" and "--no-deps" in args
    assert args[args.index("--trusted-host") + 1] == "127.0.0.1"
    assert "--trusted-host" not in client.pip_install_args("https://repo.example/simple/", "1")
