"""Joining xz streams: xz and Python's lzma read the result as one stream, and dpkg-deb
extracts a .deb whose data member is such a stream completely (a plain concatenation of
streams is cut short by dpkg-deb, checked here too)."""
from __future__ import annotations

import io
import lzma
import random
import subprocess
import tarfile

import pytest

from mxbuild.xzjoin import XzFormatError, join, split


def _tar_part(entries, end: bool) -> bytes:
    """Tar bytes of entries; without the end-of-archive blocks unless `end`."""
    buf = io.BytesIO()
    tar = tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT)
    for name, data in entries:
        info = tarfile.TarInfo(name)
        info.mtime, info.uname, info.gname = 1652763094, "root", "root"
        if data is None:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        else:
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    offset = tar.offset
    tar.close()
    return buf.getvalue() if end else buf.getvalue()[:offset]


def _xz(data: bytes, *args: str) -> bytes:
    return subprocess.run(["xz", "-c", *args], input=data, capture_output=True,
                          check=True).stdout


def test_joined_stream_is_one_valid_stream(tmp_path):
    a, b = random.Random(1).randbytes(300_000) * 3, b"tail" * 1000
    joined = join(_xz(a, "-T2", "--block-size=200000"), _xz(b, "-6"))
    assert lzma.decompress(joined) == a + b
    path = tmp_path / "j.xz"
    path.write_bytes(joined)
    subprocess.run(["xz", "-t", str(path)], check=True)
    listed = subprocess.run(["xz", "--robot", "-l", str(path)], capture_output=True,
                            text=True, check=True).stdout
    totals = next(line for line in listed.splitlines() if line.startswith("totals")).split("\t")
    assert totals[1] == "1" and int(totals[2]) >= 3     # one stream, all blocks kept


def test_split_refuses_what_is_not_a_single_stream():
    with pytest.raises(XzFormatError):
        split(b"not xz at all, but long enough to look at its footer")
    with pytest.raises(XzFormatError, match="more than one stream"):
        split(_xz(b"a") + _xz(b"b"))


def _deb(tmp_path, data_member: bytes) -> str:
    control = io.BytesIO()
    with tarfile.open(fileobj=control, mode="w:xz", format=tarfile.GNU_FORMAT) as tar:
        text = (b"Package: xzjoin-probe\nVersion: 1.0\nArchitecture: amd64\n"
                b"Maintainer: t <t@example.org>\nDescription: probe\n a probe\n")
        info = tarfile.TarInfo("./control")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    for name, data in (("debian-binary", b"2.0\n"), ("control.tar.xz", control.getvalue()),
                       ("data.tar.xz", data_member)):
        (tmp_path / name).write_bytes(data)
    deb = tmp_path / "probe.deb"
    deb.unlink(missing_ok=True)
    subprocess.run(["ar", "rcD", str(deb), "debian-binary", "control.tar.xz", "data.tar.xz"],
                   cwd=tmp_path, check=True)
    return str(deb)


def test_dpkg_deb_reads_a_joined_data_member_whole_but_not_concatenated_streams(tmp_path):
    shared = _tar_part([("./", None), ("./usr/", None), ("./usr/lib/", None),
                        ("./usr/lib/libbig.so", random.Random(2).randbytes(1 << 20))], end=False)
    rest = _tar_part([("./usr/share/", None), ("./usr/share/doc/", None),
                      ("./usr/share/doc/changelog", b"per-distro\n")], end=True)
    shared_xz, rest_xz = _xz(shared, "-T2"), _xz(rest)
    joined = _deb(tmp_path, join(shared_xz, rest_xz))
    listing = subprocess.run(["dpkg-deb", "-c", joined], capture_output=True, text=True,
                             check=True).stdout
    assert "./usr/lib/libbig.so" in listing and "./usr/share/doc/changelog" in listing
    out = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", joined, str(out)], check=True)
    assert (out / "usr/share/doc/changelog").read_bytes() == b"per-distro\n"
    # the tempting shortcut, for the record: dpkg-deb silently stops after stream one
    concatenated = _deb(tmp_path, shared_xz + rest_xz)
    listing = subprocess.run(["dpkg-deb", "-c", concatenated], capture_output=True,
                             text=True).stdout
    assert "./usr/share/doc/changelog" not in listing
