"""Assembling .debs from a shared, once-compressed payload part (debpack.py), checked with
the host's dpkg-deb and against `dpkg-deb --build` of the same tree."""
from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from mxbuild import debpack, resources
from mxbuild.errors import MxbuildError
from mxbuild.fetch import sha256_file

EPOCH = 1652763094
MA = "usr/lib/x86_64-linux-gnu"
SMALL = debpack.Compression(block_size=1 << 16)    # several blocks from a few hundred kB
RANDOM = random.Random(20240101)         # incompressible, and the same bytes every run
PAYLOAD = {f"{MA}/libmxnet.so": RANDOM.randbytes(150_000) + bytes(200_000),
           f"{MA}/libmxnet/libopenblas.so.0": RANDOM.randbytes(70_001),
           f"{MA}/libmxnet/" + "long-name-" * 12 + ".so.1": b"x" * 513}   # > 100 chars


def make_tree(tmp: Path, distro: str) -> tuple[Path, Path, dict[str, str]]:
    """(package tree, control dir, shared payload) of one distro's package."""
    root, control = tmp / distro / "root", tmp / distro / "control"
    for rel, data in PAYLOAD.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    doc = root / "usr/share/doc/libprobe"
    doc.mkdir(parents=True)
    (doc / "changelog").write_text(f"built for {distro}\n")
    (root / "usr/share/lintian").mkdir(parents=True)
    os.symlink("../doc/libprobe/changelog", root / "usr/share/lintian/link")
    control.mkdir(parents=True)
    (control / "control").write_text(
        f"Package: libprobe\nVersion: 1:1.0-1~{distro}\nArchitecture: amd64\n"
        "Maintainer: mxbuild tests <tests@example.org>\nDescription: probe\n a probe\n")
    (control / "postinst").write_text("#!/bin/sh\nexit 0\n")
    (control / "postinst").chmod(0o755)
    return root, control, {rel: sha256_file(root / rel) for rel in PAYLOAD}


def dpkg_deb(*args) -> str:
    return subprocess.run(["dpkg-deb", *args], check=True, capture_output=True,
                          text=True).stdout


def fsys(deb: Path) -> list[tarfile.TarInfo]:
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True,
                         capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        return t.getmembers()


def test_assembled_deb_reads_like_dpkg_deb_build_of_the_same_tree(tmp_path):
    root, control, shared = make_tree(tmp_path, "deb12")
    ours = debpack.assemble(root, control, shared, EPOCH, SMALL, tmp_path / "parts",
                            tmp_path / "ours").path
    assert ours.name == "libprobe_1.0-1~deb12_amd64.deb"       # epoch dropped, as dpkg does
    # the peer: dpkg-deb --build of the same tree (with the same control files in DEBIAN/)
    peer_tree = tmp_path / "peer-tree"
    shutil.copytree(root, peer_tree, symlinks=True)
    shutil.copytree(control, peer_tree / "DEBIAN")
    for path in peer_tree.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or path.name == "postinst" else 0o644)
        os.utime(path, (EPOCH, EPOCH), follow_symlinks=False)
    peer = tmp_path / "peer.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(peer_tree),
                    str(peer)], check=True, capture_output=True, env={
                        **os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)})
    def described(deb):
        return [(m.name, m.type, m.mode, m.mtime, m.size, m.uname, m.gname, m.linkname)
                for m in fsys(deb)]
    assert described(ours) == described(peer)
    assert dpkg_deb("-I", str(ours), "control") == dpkg_deb("-I", str(peer), "control")
    for deb, out in ((ours, tmp_path / "x-ours"), (peer, tmp_path / "x-peer")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True)
    for rel, data in PAYLOAD.items():
        assert (tmp_path / "x-ours" / rel).read_bytes() == data
    assert (tmp_path / "x-ours/usr/share/doc/libprobe/changelog").read_text() == "built for deb12\n"
    ctl = tmp_path / "ctl"
    subprocess.run(["dpkg-deb", "-e", str(ours), str(ctl)], check=True)
    assert os.access(ctl / "postinst", os.X_OK)
    ar = subprocess.run(["ar", "tv", str(ours)], check=True, capture_output=True,
                        text=True).stdout.splitlines()
    assert [line.split()[-1] for line in ar] == ["debian-binary", "control.tar.xz", "data.tar.xz"]
    assert all("May 17 04:51 2022" in line for line in ar)
    assert debpack.check_listing(dpkg_deb("-c", str(ours)), root, EPOCH, ours.name) == \
        len(described(ours))


def test_payload_is_compressed_once_and_the_result_does_not_depend_on_the_cache(tmp_path):
    parts = tmp_path / "parts"
    first = debpack.assemble(*make_tree(tmp_path, "deb12"), EPOCH, SMALL, parts,
                             tmp_path / "out12")
    other = debpack.assemble(*make_tree(tmp_path, "deb13"), EPOCH, SMALL, parts,
                             tmp_path / "out13")
    assert not first.data.shared_reused and other.data.shared_reused
    assert first.data.shared_key == other.data.shared_key
    assert len(list(parts.iterdir())) == 1
    member = tmp_path / "data.tar.xz"
    member.write_bytes(subprocess.run(["ar", "p", str(other.path), "data.tar.xz"], check=True,
                                      capture_output=True).stdout)
    listed = subprocess.run(["xz", "--robot", "-l", str(member)], check=True,
                            capture_output=True, text=True).stdout
    totals = next(line for line in listed.splitlines() if line.startswith("totals")).split("\t")
    assert totals[1] == "1" and int(totals[2]) > 3      # ONE stream of several blocks
    assert "built for deb13" in subprocess.run(
        ["sh", "-c", f"dpkg-deb --fsys-tarfile '{other.path}' | tar -xO ./usr/share/doc/libprobe/changelog"],
        check=True, capture_output=True, text=True).stdout
    # an empty cache and one thread: byte for byte the same .deb
    again = debpack.assemble(*make_tree(tmp_path / "again", "deb13"), EPOCH, SMALL,
                             tmp_path / "empty-parts", tmp_path / "again-out", threads=1)
    assert not again.data.shared_reused
    assert sha256_file(again.path) == sha256_file(other.path)


def test_a_different_payload_or_compression_gets_its_own_part(tmp_path):
    parts = tmp_path / "parts"
    root, control, shared = make_tree(tmp_path, "deb12")
    a = debpack.assemble(root, control, shared, EPOCH, SMALL, parts, tmp_path / "a")
    b = debpack.assemble(root, control, shared, EPOCH, debpack.Compression(
        setting="wide", block_size=1 << 16), parts, tmp_path / "b")
    (root / f"{MA}/libmxnet.so").write_bytes(b"changed")
    shared = {rel: sha256_file(root / rel) for rel in PAYLOAD}
    c = debpack.assemble(root, control, shared, EPOCH, SMALL, parts, tmp_path / "c")
    assert len({a.data.shared_key, b.data.shared_key, c.data.shared_key}) == 3
    assert not (a.data.shared_reused or b.data.shared_reused or c.data.shared_reused)


def test_check_listing_catches_a_data_member_cut_short(tmp_path):
    """The failure a concatenation of xz streams causes: dpkg-deb lists only part one."""
    root, control, shared = make_tree(tmp_path, "deb12")
    deb = debpack.assemble(root, control, shared, EPOCH, SMALL, tmp_path / "parts",
                           tmp_path / "out").path
    listing = dpkg_deb("-c", str(deb))
    cut = "\n".join(line for line in listing.splitlines() if "/share/" not in line)
    with pytest.raises(MxbuildError, match=r"lists \d+ entries, the package tree has"):
        debpack.check_listing(cut, root, EPOCH, deb.name)
    wrong_size = listing.replace(" 70001 ", " 70000 ")
    with pytest.raises(MxbuildError, match="different"):
        debpack.check_listing(wrong_size, root, EPOCH, deb.name)


def test_compression_is_chosen_by_the_target_dpkg(tmp_path):
    xenial = debpack.choose("1.18.4ubuntu1.7", "ubuntu16")    # its lintian wants control.tar.gz
    assert (xenial.format, xenial.control) == ("xz", "gzip")
    assert debpack.choose("1.19.0.5ubuntu2.4", "ubuntu18").control == "xz"
    root, control, shared = make_tree(tmp_path, "ubuntu16")
    deb = debpack.assemble(root, control, shared, EPOCH, xenial, tmp_path / "parts",
                           tmp_path / "out").path
    members = subprocess.run(["ar", "t", str(deb)], check=True, capture_output=True,
                             text=True).stdout.split()
    assert members == ["debian-binary", "control.tar.gz", "data.tar.xz"]
    assert "Package: libprobe" in dpkg_deb("-I", str(deb))
    assert debpack.choose("1.21.22", "debian12").describe()["data"]["filters"] == \
        ["x86", "lzma2 preset 5"]
    assert debpack.choose("1.21.22", "debian12", 184_000_000).block_size == 24 << 20
    assert debpack.choose("1.21.22", "debian12", 925_000_000).block_size == 89 << 20
    assert debpack.block_size_for(400 << 20) == 50 << 20
    with pytest.raises(MxbuildError, match="cannot read data.tar.xz"):
        debpack.choose("1.15.5", "debian5")
    with pytest.raises(MxbuildError, match="does not say which dpkg"):
        debpack.choose(None, "debian12")


def test_gpu_sized_payloads_get_the_wide_setting_and_it_is_recorded():
    """The setting is a function of the payload size alone: the CPU payload (184 MB) keeps
    revision 4's bytes, a GPU library gets `wide` with a dictionary as large as its block."""
    cpu = debpack.choose("1.21.22", "debian12", 184_000_000)
    gpu = debpack.choose("1.18.4ubuntu1.7", "ubuntu16", 925_000_000)
    assert cpu.setting == "default" and cpu.describe()["data"] == {
        "setting": "default", "filters": ["x86", "lzma2 preset 5"], "block_size": 24 << 20}
    assert gpu.setting == "wide" and gpu.block_size == 89 << 20
    assert gpu.describe()["data"]["filters"] == \
        ["x86", "lzma2 preset 4 (hc4, depth 1, pb 0, dict 89 MiB)"]
    lzma2 = gpu.data_filters()[1]
    assert (lzma2["dict_size"], lzma2["depth"], lzma2["pb"]) == (89 << 20, 1, 0)
    assert debpack.setting_for(debpack.WIDE_FROM - 1) == "default"
    assert debpack.setting_for(debpack.WIDE_FROM) == "wide"


def test_wide_debs_are_read_by_dpkg_and_the_same_with_any_thread_count(tmp_path):
    wide = debpack.Compression(setting="wide", block_size=1 << 16)
    one = debpack.assemble(*make_tree(tmp_path / "one", "deb12"), EPOCH, wide,
                           tmp_path / "parts1", tmp_path / "out1", threads=1)
    two = debpack.assemble(*make_tree(tmp_path / "two", "deb12"), EPOCH, wide,
                           tmp_path / "parts2", tmp_path / "out2", threads=2)
    assert sha256_file(one.path) == sha256_file(two.path)
    root = tmp_path / "one" / "deb12" / "root"
    assert debpack.check_listing(dpkg_deb("-c", str(one.path)), root, EPOCH,
                                 one.path.name) == len(debpack.entries(root, EPOCH))
    assert subprocess.run(
        ["sh", "-c", f"dpkg-deb --fsys-tarfile '{one.path}' | tar -xO ./{MA}/libmxnet.so"],
        check=True, capture_output=True).stdout == PAYLOAD[f"{MA}/libmxnet.so"]


@pytest.mark.parametrize("payload", [700_000_000, 924_000_000, 1_326_000_000, 5_000_000_000])
def test_gpu_payloads_split_into_an_even_number_of_nearly_equal_blocks(payload):
    size = debpack.block_size_for(payload)
    blocks = -(-payload // size)
    assert size <= 96 << 20 and size % (1 << 20) == 0
    assert blocks % 2 == 0 and blocks >= 8
    assert payload - (blocks - 1) * size > size - blocks * (1 << 20)   # the last one too


GPU_BLOCKS = debpack.Compression(setting="wide", block_size=96 << 20)   # 1.5 GiB a thread
CPU_BLOCKS = debpack.Compression()            # preset 5, 24 MiB blocks: 192 MiB a thread


def test_threads_are_capped_by_the_memory_the_encoders_need():
    # half of the memory, 1.5 GiB per `wide` GPU thread: 24 GiB -> 8 threads
    assert debpack.encoder_threads(32, GPU_BLOCKS, available=24 << 30) == 8
    assert debpack.encoder_threads(2, GPU_BLOCKS, available=24 << 30) == 2
    assert debpack.encoder_threads(8, GPU_BLOCKS, available=1 << 30) == 1     # never none
    assert debpack.encoder_threads(32, CPU_BLOCKS, available=24 << 30) == 32
    assert debpack.encoder_threads(64, CPU_BLOCKS, available=24 << 30) == 64
    assert debpack.encoder_threads(128, CPU_BLOCKS, available=24 << 30) == 64


def test_without_a_figure_the_cap_reads_memavailable(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       25165824 kB\nMemFree:         1048576 kB\n"
                       "MemAvailable:    4194304 kB\n")                  # 4 GiB available
    monkeypatch.setattr(resources, "MEMINFO", meminfo)
    assert resources.available_memory() == 4 << 30
    assert debpack.encoder_threads(32, GPU_BLOCKS) == 1
    assert debpack.encoder_threads(32, CPU_BLOCKS) == 10


def test_without_memavailable_the_cap_assumes_8_gib(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "MEMINFO", tmp_path / "no-such-meminfo")
    assert resources.available_memory() == 8 << 30
    assert debpack.encoder_threads(32, GPU_BLOCKS) == 2
    assert debpack.encoder_threads(32, CPU_BLOCKS) == 21
    (tmp_path / "old-kernel").write_text("MemTotal:       25165824 kB\n")   # before 3.14
    monkeypatch.setattr(resources, "MEMINFO", tmp_path / "old-kernel")
    assert resources.available_memory() == 8 << 30
