"""Join xz streams into one stream, reusing their compressed blocks.

Groundwork for compressing a package's large payload once and sharing it between the
.debs of several distros: the shared part and each distro's small rest are compressed
separately and joined into a single stream. A plain concatenation of streams will not do:
dpkg-deb (1.18.4 xenial, 1.19.0.5 bionic, 1.21.23 bookworm) stops at the end of the first
stream of a data member and silently drops the rest. Joined into one stream (blocks as
they are, one index over all of them, new header and footer), every dpkg reads it whole.
Format: https://tukaani.org/xz/xz-file-format.txt (stream header/footer, index).
"""
from __future__ import annotations

import struct
import zlib

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


def split(stream: bytes) -> tuple[bytes, bytes, list[tuple[int, int]]]:
    """(stream flags, the blocks, index records (unpadded, uncompressed)) of ONE stream."""
    if stream[:6] != MAGIC or len(stream) < 32:
        raise XzFormatError("not an xz stream")
    flags, footer = stream[6:8], stream[-12:]
    if footer[10:12] != FOOTER_MAGIC or footer[8:10] != flags:
        raise XzFormatError("not a single xz stream (footer does not match the header)")
    if struct.unpack("<I", footer[:4])[0] != zlib.crc32(footer[4:10]):
        raise XzFormatError("stream footer CRC32 mismatch")
    index_size = (struct.unpack("<I", footer[4:8])[0] + 1) * 4
    index = stream[-12 - index_size:-12]
    if not index or index[0] != 0:
        raise XzFormatError("no index where the footer says")
    if struct.unpack("<I", index[-4:])[0] != zlib.crc32(index[:-4]):
        raise XzFormatError("index CRC32 mismatch")
    count, pos = _read_varint(index, 1)
    records = []
    for _ in range(count):
        unpadded, pos = _read_varint(index, pos)
        uncompressed, pos = _read_varint(index, pos)
        records.append((unpadded, uncompressed))
    blocks = stream[12:-12 - index_size]
    if len(blocks) != sum(u + (-u % 4) for u, _ in records):
        raise XzFormatError("the blocks do not add up to the index: more than one stream?")
    return flags, blocks, records


def join(*streams: bytes) -> bytes:
    """One xz stream decompressing to the concatenation of what the streams decompress
    to. They must use the same integrity check (xz's default, CRC64, for all of ours)."""
    parts = [split(s) for s in streams]
    flags = parts[0][0]
    if any(p[0] != flags for p in parts):
        raise XzFormatError("streams use different integrity checks")
    index = bytearray(b"\x00") + _varint(sum(len(p[2]) for p in parts))
    for _, _, records in parts:
        for unpadded, uncompressed in records:
            index += _varint(unpadded) + _varint(uncompressed)
    index += b"\x00" * (-len(index) % 4)
    index += struct.pack("<I", zlib.crc32(index))
    backward = struct.pack("<I", len(index) // 4 - 1)
    return (MAGIC + flags + struct.pack("<I", zlib.crc32(flags))
            + b"".join(p[1] for p in parts) + bytes(index)
            + struct.pack("<I", zlib.crc32(backward + flags)) + backward + flags + FOOTER_MAGIC)
