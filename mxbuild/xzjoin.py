"""Join xz streams into one stream, reusing their compressed blocks.

The package stage compresses a .deb's large shared payload once (debpack.py) and each
distro's small rest separately, then joins them into a single stream. A plain
concatenation of streams will not do: dpkg-deb (1.18.4 xenial, 1.19.0.5 bionic, 1.21.23
bookworm) stops at the end of the first stream of a data member and silently drops the
rest. Joined into one stream (blocks as
they are, one index over all of them, new header and footer), every dpkg reads it whole.
Format: https://tukaani.org/xz/xz-file-format.txt (stream header/footer, index).
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

MAGIC = b"\xfd7zXZ\x00"
FOOTER_MAGIC = b"YZ"


class XzFormatError(ValueError):
    pass


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(9):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
    raise XzFormatError("malformed multibyte integer in the index")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _parse_tail(footer: bytes, read_index) -> tuple[bytes, int, list[tuple[int, int]]]:
    """(stream flags, index size, index records) from a stream's 12-byte footer;
    `read_index(size)` returns the `size` bytes before the footer."""
    if len(footer) < 12 or footer[10:12] != FOOTER_MAGIC:
        raise XzFormatError("not an xz stream (no stream footer)")
    if struct.unpack("<I", footer[:4])[0] != zlib.crc32(footer[4:10]):
        raise XzFormatError("stream footer CRC32 mismatch")
    index_size = (struct.unpack("<I", footer[4:8])[0] + 1) * 4
    index = read_index(index_size)
    if len(index) != index_size or index[0] != 0:
        raise XzFormatError("no index where the footer says")
    if struct.unpack("<I", index[-4:])[0] != zlib.crc32(index[:-4]):
        raise XzFormatError("index CRC32 mismatch")
    count, pos = _read_varint(index, 1)
    records = []
    for _ in range(count):
        unpadded, pos = _read_varint(index, pos)
        uncompressed, pos = _read_varint(index, pos)
        records.append((unpadded, uncompressed))
    return footer[8:10], index_size, records


def _blocks_size(records: list[tuple[int, int]]) -> int:
    return sum(u + (-u % 4) for u, _ in records)


def _locate(f: BinaryIO, what: str) -> tuple[bytes, int, list[tuple[int, int]]]:
    """(stream flags, length of the blocks, index records) of the ONE xz stream in the
    seekable file f; the blocks start at offset 12."""
    size = f.seek(0, 2)
    f.seek(0)
    header = f.read(12)
    if header[:6] != MAGIC or size < 32:
        raise XzFormatError(f"{what}: not an xz stream")

    def read_index(n: int) -> bytes:
        f.seek(size - 12 - n)
        return f.read(n)
    f.seek(size - 12)
    flags, index_size, records = _parse_tail(f.read(12), read_index)
    if header[6:8] != flags:
        raise XzFormatError(f"{what}: not a single xz stream (footer does not match the "
                            "header)")
    blocks = size - 12 - index_size - 12
    if blocks != _blocks_size(records):
        raise XzFormatError(f"{what}: the blocks do not add up to the index: more than one "
                            "stream?")
    return flags, blocks, records


def split(stream: bytes) -> tuple[bytes, bytes, list[tuple[int, int]]]:
    """(stream flags, the blocks, index records (unpadded, uncompressed)) of ONE stream."""
    flags, blocks, records = _locate(io.BytesIO(stream), "xz data")
    return flags, stream[12:12 + blocks], records


class Joiner:
    """Write one xz stream to `out` from several, added in order: in memory (`add`) or
    from a file (`add_file`, copied in pieces: a GPU payload compresses to ~300 MB)."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.flags: bytes | None = None
        self.records: list[tuple[int, int]] = []

    def _start(self, flags: bytes) -> None:
        if self.flags is None:
            self.flags = flags
            self.out.write(MAGIC + flags + struct.pack("<I", zlib.crc32(flags)))
        elif flags != self.flags:
            raise XzFormatError("streams use different integrity checks")

    def add(self, stream: bytes) -> None:
        self._add(io.BytesIO(stream), "xz data")

    def add_file(self, path: Path) -> None:
        with open(path, "rb") as f:
            self._add(f, str(path))

    def _add(self, f: BinaryIO, what: str) -> None:
        flags, remaining, records = _locate(f, what)
        self._start(flags)
        f.seek(12)
        while remaining:
            piece = f.read(min(remaining, 1 << 22))
            if not piece:
                raise XzFormatError(f"{what} ended early")
            self.out.write(piece)
            remaining -= len(piece)
        self.records += records

    def close(self) -> None:
        if self.flags is None:
            raise XzFormatError("nothing to join")
        index = bytearray(b"\x00") + _varint(len(self.records))
        for unpadded, uncompressed in self.records:
            index += _varint(unpadded) + _varint(uncompressed)
        index += b"\x00" * (-len(index) % 4)
        index += struct.pack("<I", zlib.crc32(index))
        backward = struct.pack("<I", len(index) // 4 - 1)
        self.out.write(bytes(index) + struct.pack("<I", zlib.crc32(backward + self.flags))
                       + backward + self.flags + FOOTER_MAGIC)


def join(*streams: bytes) -> bytes:
    """One xz stream decompressing to the concatenation of what the streams decompress
    to. They must use the same integrity check (xz's default, CRC64, for all of ours)."""
    buf = io.BytesIO()
    joiner = Joiner(buf)
    for stream in streams:
        joiner.add(stream)
    joiner.close()
    return buf.getvalue()
