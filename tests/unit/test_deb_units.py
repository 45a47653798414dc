import subprocess

import pytest

from mxbuild.deb import clamp_ar_mtimes
from mxbuild.errors import MxbuildError

from ..conftest import make_deb


def ar_times(deb):
    out = subprocess.run(["ar", "tv", str(deb)], check=True, capture_output=True, text=True)
    return [" ".join(line.split()[3:7]) for line in out.stdout.splitlines()]


def test_clamp_ar_mtimes_sets_every_member_and_keeps_the_archive_valid(tmp_path):
    deb = make_deb(tmp_path, "probe", "1.0-1", b"x" * 1001)   # odd sizes: ar padding
    before = deb.read_bytes()
    clamp_ar_mtimes(deb, 1652763094)
    assert ar_times(deb) == ["May 17 04:51 2022"] * 3
    assert len(deb.read_bytes()) == len(before)
    subprocess.run(["dpkg-deb", "-I", str(deb)], check=True, capture_output=True)
    again = deb.read_bytes()
    clamp_ar_mtimes(deb, 1652763094)                           # idempotent
    assert deb.read_bytes() == again


def test_clamp_ar_mtimes_refuses_a_non_ar_file(tmp_path):
    f = tmp_path / "x.deb"
    f.write_bytes(b"not an archive")
    with pytest.raises(MxbuildError, match="not an ar archive"):
        clamp_ar_mtimes(f, 0)
