"""Assemble a .deb (ar: debian-binary, control.tar.xz, data.tar.xz) from a package tree and
the control files that distro's dpkg-gencontrol wrote, without `dpkg-deb --build`.

Why: the payload (libmxnet.so + bundled libraries, 176 MB for CPU, ~900 MB for GPU) is
byte-identical in every distro of a variant, and compressing it is nearly all the cost of
packaging. The data member is a tar in dpkg-deb's order; its leading part (the payload and
the directories above it) is compressed once, cached by a content hash, and joined with
each distro's small rest into ONE xz stream (xzjoin.py: dpkg-deb silently stops at the end
of a first stream, so concatenated streams would lose the rest).

Blocks are compressed independently, several at a time (like `xz -T`), so the output does
not depend on the number of threads.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import stat
import tarfile
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Mapping

from debian.debian_support import Version

from .errors import MxbuildError
from .resources import available_memory
from .xzjoin import Joiner

BLOCK = 512
RECORD = 20 * BLOCK          # GNU tar pads an archive to whole records of 20 blocks
PIECE = 1 << 20


@functools.cache   # a fact about this process's liblzma: asked once
def liblzma_version() -> str:
    """The liblzma Python's lzma module compresses with (its output is recorded by version)."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("lzma") or "liblzma.so.5")
        lib.lzma_version_string.restype = ctypes.c_char_p
        return lib.lzma_version_string().decode()
    except (OSError, AttributeError):
        return "unknown"


MiB = 1 << 20


@dataclass(frozen=True)
class Lzma2:
    """An LZMA2 setting of the data member: a preset plus the options that differ from it
    (None: the preset's). `whole_block_dict`: the dictionary is as large as the block."""
    name: str
    preset: int
    match_finder: str | None = None      # "hc3", "hc4", "bt4"
    depth: int | None = None
    nice_len: int | None = None
    pb: int | None = None
    whole_block_dict: bool = False

    def options(self, block_size: int) -> dict:
        opts: dict = {"id": lzma.FILTER_LZMA2, "preset": self.preset}
        if self.match_finder:
            opts["mf"] = _MATCH_FINDERS[self.match_finder]
        for key in ("depth", "nice_len", "pb"):
            if getattr(self, key) is not None:
                opts[key] = getattr(self, key)
        if self.whole_block_dict:
            opts["dict_size"] = block_size
        return opts

    def dict_size(self, block_size: int) -> int:
        return block_size if self.whole_block_dict else _PRESET_DICT[self.preset]

    def describe(self, block_size: int) -> str:
        extra = [v for v in (self.match_finder,
                             self.depth is not None and f"depth {self.depth}",
                             self.nice_len is not None and f"nice {self.nice_len}",
                             self.pb is not None and f"pb {self.pb}",
                             self.whole_block_dict and f"dict {block_size // MiB} MiB") if v]
        return f"lzma2 preset {self.preset}" + (f" ({', '.join(extra)})" if extra else "")


_MATCH_FINDERS = {"hc3": lzma.MF_HC3, "hc4": lzma.MF_HC4, "bt4": lzma.MF_BT4}
_PRESET_DICT = {0: 256 << 10, 1: MiB, 2: 2 * MiB, 3: 4 * MiB, 4: 4 * MiB, 5: 8 * MiB,
                6: 8 * MiB, 7: 16 * MiB, 8: 32 * MiB, 9: 64 * MiB}    # liblzma's presets

# The data member's settings, by name (buildinfo.json records the name and its filters).
# default: what every package had up to revision 4, kept for payloads below WIDE_FROM.
# wide: for the GPU libraries (~0.7–1.3 GB, 40–70 % of it .nv_fatbin: the same kernels for
# several GPU architectures, far apart). Measured on 96 MiB windows of cu90's and cu92's
# libraries against xz -6 in 24 MiB blocks (dpkg-deb's setting), CPU time / size: a
# dictionary as large as the 96 MiB block takes the size to 0.79 (cu92's fatbin; 0.83
# with 32 MiB) at no cost in time, and a one-candidate hash-chain search (depth 1) takes
# the time from 1.03 (depth 4) to 0.69. docs/bench.md "Per-payload choice" has the rest.
LZMA2_SETTINGS = {s.name: s for s in (
    Lzma2("default", 5),
    Lzma2("wide", 4, match_finder="hc4", depth=1, pb=0, whole_block_dict=True),
)}


@dataclass(frozen=True)
class Compression:
    """How a .deb's members are compressed; chosen per target dpkg and payload (choose()),
    kept in buildinfo.json."""
    format: str = "xz"
    control: str = "xz"              # or "gzip": what the target's own dpkg-deb writes
    setting: str = "default"         # a key of LZMA2_SETTINGS
    x86_filter: bool = True          # BCJ: x86 machine code compresses ~2-4 % smaller
    block_size: int = 24 << 20       # see block_size_for

    def data_filters(self) -> list[dict]:
        lzma2 = LZMA2_SETTINGS[self.setting].options(self.block_size)
        return [{"id": lzma.FILTER_X86}, lzma2] if self.x86_filter else [lzma2]

    def describe(self) -> dict:
        lzma2 = LZMA2_SETTINGS[self.setting].describe(self.block_size)
        return {"format": self.format, "data": {
            "setting": self.setting,
            "filters": (["x86"] if self.x86_filter else []) + [lzma2],
            "block_size": self.block_size},
            "control": "xz (lzma2 preset 6)" if self.control == "xz" else "gzip -9n",
            "liblzma": liblzma_version()}


# What a target's dpkg reads. data.tar.xz: since 1.15.6, with any xz filter chain (BCJ
# included). control.tar.xz: read since 1.17.6, but dpkg-deb writes it only from 1.19.0 and
# the lintian released beside an older dpkg (xenial's) calls it malformed: gzip there.
# zstd is not offered: Debian's dpkg reads it only from 1.21.18 and bookworm's lintian
# calls zstd members malformed.
XZ_DATA_SINCE = "1.15.6"
XZ_CONTROL_SINCE = "1.19.0"


MIN_BLOCK, MAX_BLOCK, BLOCKS = 24 << 20, 96 << 20, 8


# From this payload size on, the `wide` setting: only the GPU libraries (the CPU payload is
# ~176 MB and keeps `default`, its bytes unchanged).
WIDE_FROM = 512 * MiB


def block_size_for(payload_bytes: int) -> int:
    """Independent blocks are what lets several threads compress at once, but each starts
    with an empty dictionary: a GPU library (~900 MB) comes out 3 % smaller in 96 MiB
    blocks than in 24 MiB ones (xz -T's default). So: about 8 blocks, 24…96 MiB, rounded
    to MiB. From WIDE_FROM on, an even number of blocks (at least 8) of nearly equal size,
    at most 96 MiB: two threads then finish together (cu90's 924 MB in 96 MiB blocks left
    a lone 17 MiB tenth block, and one thread idle for most of the last round). It depends
    on the payload alone, never on the machine (same bytes anywhere)."""
    if payload_bytes < WIDE_FROM:      # as in revision 4: the CPU payload's bytes unchanged
        per_block = -(-payload_bytes // BLOCKS)
        return min(MAX_BLOCK, max(MIN_BLOCK, -(-per_block // MiB) * MiB))
    blocks = max(BLOCKS, -(-payload_bytes // MAX_BLOCK))
    blocks += blocks % 2
    per_block = -(-payload_bytes // blocks)
    return -(-per_block // MiB) * MiB


def setting_for(payload_bytes: int) -> str:
    """The data member's LZMA2 setting for a payload: a function of the payload alone
    (never of the machine or of timing), so its bytes are the same anywhere. No sample is
    compressed to choose: the gain of `wide` comes from matches up to 96 MiB apart, which
    a sample cheap enough to compress first cannot see (16 MiB windows misjudged 7 of the
    12 GPU libraries and cost 6-17 % of the packaging time; docs/bench.md)."""
    return "wide" if payload_bytes >= WIDE_FROM else "default"


# The xz BCJ filter for a machine's code (`uname -m`). Other machines get none: xz's ARM64
# filter (liblzma 5.4) is unknown to the dpkg of Debian 11, and the x86 one only reshuffles
# bytes of code it does not describe.
BCJ_FOR_MACHINE = {"x86_64": "x86"}


def choose(dpkg_version: str | None, distro: str, payload_bytes: int = 0,
           machine: str = "x86_64") -> Compression:
    if not dpkg_version:
        raise MxbuildError(f"the {distro} build image does not say which dpkg it has",
                           "rebuild the build image (invoke build --force-stage image)")
    if Version(dpkg_version) < Version(XZ_DATA_SINCE):
        raise MxbuildError(f"{distro}'s dpkg {dpkg_version} cannot read data.tar.xz "
                           f"(needs {XZ_DATA_SINCE})",
                           "target a newer distro release in matrix.yaml")
    control = "gzip" if Version(dpkg_version) < Version(XZ_CONTROL_SINCE) else "xz"
    return Compression(control=control, setting=setting_for(payload_bytes),
                       x86_filter=BCJ_FOR_MACHINE.get(machine) == "x86",
                       block_size=block_size_for(payload_bytes))


@dataclass(frozen=True)
class Entry:
    info: tarfile.TarInfo
    source: Path | None              # the file's bytes (regular files only)

    @property
    def rel(self) -> str:            # "usr/lib/x" ("" for the root)
        return self.info.name[2:].rstrip("/")

    def header(self) -> bytes:
        return self.info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")

    def pieces(self) -> Iterator[bytes]:
        yield self.header()
        if self.source is not None:
            with open(self.source, "rb") as f:
                left = self.info.size
                while left:
                    piece = f.read(min(PIECE, left))
                    if not piece:
                        raise MxbuildError(f"{self.source} shrank while packaging", "")
                    yield piece
                    left -= len(piece)
            if self.info.size % BLOCK:
                yield b"\0" * (BLOCK - self.info.size % BLOCK)

    def tar_size(self) -> int:   # a long name adds GNU LONGNAME blocks to the header
        return len(self.header()) + -(-self.info.size // BLOCK) * BLOCK


def entries(root: Path, epoch: int, *, keep_exec: bool = False) -> list[Entry]:
    """Every file under `root` as dpkg-deb would archive it: dpkg's order (a directory, then
    its contents, by name), root:root, mtime `epoch`; directories 0755, files 0644 (the
    package holds libraries and documents) or, with keep_exec, 0755 when executable
    (maintainer scripts in the control member)."""
    found = [(), *(Path(dirpath, name).relative_to(root).parts
                   for dirpath, dirs, files in os.walk(root) for name in dirs + files)]
    out = []
    for parts in sorted(found):
        path = root.joinpath(*parts)
        is_dir = path.is_dir() and not path.is_symlink()
        info = tarfile.TarInfo("./" + "".join(f"{p}/" for p in parts[:-1]) + (
            parts[-1] + ("/" if is_dir else "") if parts else ""))
        info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "root", "root"
        source = None
        if path.is_symlink():
            info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, os.readlink(path)
        elif is_dir:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
        elif path.is_file():
            info.size, source = path.stat().st_size, path
            info.mode = 0o755 if keep_exec and os.access(path, os.X_OK) else 0o644
        else:
            raise MxbuildError(f"{path} is neither a file, a directory nor a symlink",
                               "remove it from the package tree")
        out.append(Entry(info, source))
    return out


def shared_prefix(tree: list[Entry], shared: Mapping[str, str]) -> int:
    """How many leading entries are the shared payload or directories above it."""
    above = {"/".join(Path(rel).parts[:i]) for rel in shared
             for i in range(len(Path(rel).parts))}
    n = 0
    for entry in tree:
        if not (entry.rel in shared if entry.source else entry.rel in above):
            break
        n += 1
    return n


def prefix_key(prefix: list[Entry], shared: Mapping[str, str], compression: Compression) -> str:
    about = compression.describe()
    h = hashlib.sha256(json.dumps([about["format"], about["data"], about["liblzma"]]).encode())
    for entry in prefix:
        h.update(entry.header())
        if entry.source is not None:
            h.update(shared[entry.rel].encode())
    return h.hexdigest()


def _blocks(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    buf = bytearray()
    for piece in pieces:
        buf += piece
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def encoder_threads(requested: int, compression: Compression,
                    available: int | None = None) -> int:
    """How many blocks to compress at once: each thread holds an encoder (up to ~12 × its
    dictionary in liblzma) and its blocks in and out, and a `wide` GPU block needs about
    1.5 GB; so no more threads than half of the memory available holds (a 32-core agent
    must not start 32). The output does not depend on it."""
    if available is None:
        available = available_memory()
    per_thread = 12 * LZMA2_SETTINGS[compression.setting].dict_size(compression.block_size) \
        + 4 * compression.block_size    # blocks queued and compressed, in and out
    return max(1, min(requested, available // 2 // per_thread))


def compress_into(joiner: Joiner, pieces: Iterable[bytes], compression: Compression,
                  threads: int) -> int:
    """Compress `pieces` in blocks of compression.block_size, `threads` blocks at a time,
    adding them to `joiner` in order. Returns the uncompressed size."""
    filters = compression.data_filters()
    threads = encoder_threads(threads, compression)
    total = 0
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="xz") as pool:
        pending: deque = deque()
        for block in _blocks(pieces, compression.block_size):
            total += len(block)
            pending.append(pool.submit(lzma.compress, block, format=lzma.FORMAT_XZ,
                                       filters=filters))
            # a queue twice the threads deep: a thread done with a fast block (x86 code)
            # takes the next one while the oldest (a GPU fat binary) is still running
            while len(pending) > 2 * threads:
                joiner.add(pending.popleft().result())
        while pending:
            joiner.add(pending.popleft().result())
    return total


@dataclass(frozen=True)
class DataMember:
    size: int                  # compressed
    tar_size: int
    shared_key: str | None     # the cached part's key (None: nothing shared)
    shared_reused: bool
    shared_tar_size: int


# params: data.tar's independent inputs; assemble's, minus the control part
def write_data_member(out: BinaryIO, tree: list[Entry], shared: Mapping[str, str],
                      compression: Compression, parts_dir: Path, threads: int,
                      locks: Callable[[str], threading.Lock] | None = None) -> DataMember:
    """`locks`: named locks shared by the cells of a run, so that of two cells of one
    variant packaged at once one compresses the payload part and the other waits for it
    (none: nothing is shared)."""
    n = shared_prefix(tree, shared)
    prefix, rest = tree[:n], tree[n:]
    prefix_size = sum(e.tar_size() for e in prefix)
    start = out.tell()
    joiner = Joiner(out)
    key, reused = None, False
    if any(e.source for e in prefix):
        key = prefix_key(prefix, shared, compression)
        part = parts_dir / f"{key}.xz"
        lock = locks(f"deb-part-{key}") if locks else threading.Lock()
        with lock:    # cells of one variant packaged at once: one compresses, one waits
            reused = part.is_file()
            if not reused:
                parts_dir.mkdir(parents=True, exist_ok=True)
                tmp = part.with_name(f".{part.name}.{os.getpid()}.{threading.get_ident()}")
                try:
                    with open(tmp, "wb") as f:
                        part_joiner = Joiner(f)
                        compress_into(part_joiner, (p for e in prefix for p in e.pieces()),
                                      compression, threads)
                        part_joiner.close()
                    os.replace(tmp, part)
                except BaseException:
                    tmp.unlink(missing_ok=True)
                    raise
        joiner.add_file(part)
    else:
        rest = tree
        prefix_size = 0
    entries_size = prefix_size + sum(e.tar_size() for e in rest)
    trailer = tar_trailer(entries_size)

    def rest_pieces():
        for e in rest:
            yield from e.pieces()
        yield trailer
    compress_into(joiner, rest_pieces(), compression, threads)
    joiner.close()
    return DataMember(out.tell() - start, entries_size + len(trailer), key, reused,
                      prefix_size)


def tar_trailer(entries_size: int) -> bytes:
    """What ends a tar whose entries take `entries_size` bytes: two zero blocks, then
    zeros up to a whole record (GNU tar's layout)."""
    end = entries_size + 2 * BLOCK
    return b"\0" * (2 * BLOCK + -end % RECORD)


def control_member(control_dir: Path, epoch: int, compression: Compression) -> bytes:
    """control.tar.{xz,gz} of DEBIAN/ (control, md5sums, symbols, triggers, scripts)."""
    buf = io.BytesIO()
    for entry in entries(control_dir, epoch, keep_exec=True):
        for piece in entry.pieces():
            buf.write(piece)
    buf.write(tar_trailer(buf.tell()))
    if compression.control == "gzip":    # no name, no time: reproducible
        return gzip.compress(buf.getvalue(), compresslevel=9, mtime=0)
    return lzma.compress(buf.getvalue(), format=lzma.FORMAT_XZ, preset=6)


AR_MAGIC = b"!<arch>\n"


def _ar_header(name: str, size: int, epoch: int) -> bytes:
    # dpkg-deb's own layout: name padded (no trailing "/"), uid/gid 0, mode 100644
    header = (f"{name:<16}{epoch:<12}{0:<6}{0:<6}{'100644':<8}{size:<10}").encode() + b"`\n"
    assert len(header) == 60, header
    return header


@dataclass(frozen=True)
class Assembled:
    path: Path
    data: DataMember
    control_size: int


def deb_filename(control_dir: Path) -> str:
    """<package>_<version without epoch>_<arch>.deb, dpkg-deb's name for it."""
    from debian.deb822 import Deb822
    fields = Deb822((control_dir / "control").read_text())
    version = fields["Version"].split(":", 1)[-1]
    return f"{fields['Package']}_{version}_{fields['Architecture']}.deb"


# params: the .deb's independent inputs (tree, control, payload, epoch, compression, dirs)
def assemble(tree_root: Path, control_dir: Path, shared: Mapping[str, str], epoch: int,
             compression: Compression, parts_dir: Path, out_dir: Path,
             threads: int | None = None,
             locks: Callable[[str], threading.Lock] | None = None) -> Assembled:
    """Write out_dir/<package>_<version>_<arch>.deb. `shared`: tree-relative path →
    sha256 of the files every distro's package holds byte for byte (the payload)."""
    threads = threads or len(os.sched_getaffinity(0))
    tree = entries(tree_root, epoch)
    control = control_member(control_dir, epoch, compression)
    control_name = "control.tar.gz" if compression.control == "gzip" else "control.tar.xz"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / deb_filename(control_dir)
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "wb") as f:
        f.write(AR_MAGIC + _ar_header("debian-binary", 4, epoch) + b"2.0\n")
        f.write(_ar_header(control_name, len(control), epoch) + control
                + b"\n" * (len(control) % 2))
        header_at = f.tell()
        f.write(_ar_header("data.tar.xz", 0, epoch))      # size written once known
        data = write_data_member(f, tree, shared, compression, parts_dir, threads, locks)
        f.write(b"\n" * (data.size % 2))
        f.seek(header_at)
        f.write(_ar_header("data.tar.xz", data.size, epoch))
    os.replace(tmp, path)
    return Assembled(path, data, len(control))


_LISTING = re.compile(r"^(\S{10}) (\S+)/(\S+) +(\d+) \S+ \S+ (.+)$")


def check_listing(listing: str, tree_root: Path, epoch: int, deb: str) -> int:
    """`dpkg-deb -c` of an assembled .deb (run by the target distro's dpkg) must list every
    entry of the tree with its size and mode, nothing else. Returns the entry count."""
    want = {}
    for e in entries(tree_root, epoch):
        want[e.info.name] = (stat.filemode(e.info.mode | _type_bits(e.info)), e.info.size)
    got = {}
    for line in listing.splitlines():
        m = _LISTING.match(line)
        if m:
            name = m.group(5).split(" -> ", 1)[0]
            got[name] = (m.group(1), int(m.group(4)))
    if got != want:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        differ = sorted(n for n in set(want) & set(got) if want[n] != got[n])
        raise MxbuildError(
            f"{deb}: dpkg-deb -c lists {len(got)} entries, the package tree has {len(want)}"
            f" (missing: {missing[:3]}, unexpected: {extra[:3]}, different: {differ[:3]})",
            "the assembled data member is not what this distro's dpkg reads; "
            "report it with the package log")
    return len(got)


def _type_bits(info: tarfile.TarInfo) -> int:
    if info.type == tarfile.DIRTYPE:
        return stat.S_IFDIR
    if info.type == tarfile.SYMTYPE:
        return stat.S_IFLNK
    return stat.S_IFREG
