"""Rewrite the RPATH string of an ELF shared object in place.

patchelf moves `.dynstr` into a new PT_LOAD segment appended to the file when a string
grows, and glibc <= 2.27's ldconfig (xenial, bionic) then reports the library as
"truncated": its readelflib turns DT_STRTAB into a file offset with the *first* PT_LOAD's
address/offset delta. An in-place edit changes only the bytes of the string itself: the
file keeps its size, its layout and its tag (DT_RPATH stays DT_RPATH), and every ldconfig
reads it as before.

The room for a new string is the old one plus the bytes after its NUL that nothing
references. References into DT_STRTAB are collected the way the dynamic loader and the
binutils see them, through the program headers and the dynamic segment only (section
headers are consulted, when they are sane, just to count the dynamic symbols), so files
without usable section headers (UPX-packed ones) work too:

- the st_name of every dynamic symbol (how many: DT_GNU_HASH, DT_HASH and the SHT_DYNSYM
  section header; the largest count wins),
- the string-valued dynamic entries (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH,
  DT_AUXILIARY, DT_FILTER, DT_CONFIG, DT_DEPAUDIT, DT_AUDIT, DT_USED),
- version definitions (vda_name) and version needs (vn_file, vna_name).

A file with DT_GNU_LIBLIST (prelink's list, whose names are not read here) is refused.

A reference covers its offset up to the next NUL, so a string that the linker tail-merged
into a longer one (the symbol `bar` inside `$ORIGIN/bar`) marks the longer one's tail.

Only x86-64 little-endian ELF64 shared objects (ET_DYN) are accepted: pyelftools would
parse the other classes and byte orders, but mxbuild ships amd64 only and the tests build
x86-64 fixtures, so anything else is refused rather than edited untested.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.common.utils import struct_parse
from elftools.elf.elffile import ELFFile
from elftools.elf.hash import GNUHashTable

from .errors import MxbuildError

# Dynamic tags whose value is an offset into DT_STRTAB (pyelftools' names; DT_USED, a
# Solaris tag pyelftools does not name, by number).
STRING_TAGS = frozenset({"DT_NEEDED", "DT_SONAME", "DT_RPATH", "DT_RUNPATH", "DT_AUXILIARY",
                         "DT_FILTER", "DT_CONFIG", "DT_DEPAUDIT", "DT_AUDIT", 0x7FFFFFFE})
RPATH_TAGS = ("DT_RPATH", "DT_RUNPATH")
# Tags pointing at tables whose string references this module does not read: refuse.
UNREAD_TAGS = frozenset({"DT_GNU_LIBLIST", 0x6FFFFEF9})
# More records than this in a version chain means a corrupt (looping) chain.
MAX_VERSION_RECORDS = 1 << 16


@dataclass(frozen=True)
class RpathInfo:
    """Where a shared object's RPATH string is and how long a string fits in its place."""
    path: Path
    tag: str                    # "DT_RPATH", "DT_RUNPATH" or "DT_RPATH+DT_RUNPATH" (one string)
    value: str
    strtab_offset: int          # offset of the string in DT_STRTAB
    file_offset: int            # offset of its first byte in the file
    room: int                   # bytes available in place: its length + unreferenced bytes after it
    shared_with: tuple[str, ...] = ()   # other references into the string's bytes

    def fits(self, new: str) -> bool:
        data = new.encode("utf-8")
        return bool(data) and b"\0" not in data and not self.shared_with \
            and len(data) <= self.room


def rpath_room(path: str | os.PathLike) -> RpathInfo:
    """The RPATH/RUNPATH string of a shared object and the room for a new one in place."""
    path = Path(path)
    with _open(path, "rb") as f:
        return _Dynamic(path, f).rpath()


def soname(path: str | os.PathLike) -> str | None:
    """A shared object's DT_SONAME, or None when it has none."""
    path = Path(path)
    with _open(path, "rb") as f:
        dyn = _Dynamic(path, f)
        offset = dyn.tag("DT_SONAME")
        if offset is None:
            return None
        return dyn.strtab[offset:dyn.strtab.index(b"\0", offset)].decode("utf-8", "replace")


def set_rpath_in_place(path: str | os.PathLike, new: str) -> None:
    """Overwrite the RPATH/RUNPATH string of `path` with `new`: NUL-terminated, the rest of
    the old string's bytes zeroed, the tag kept, the file size unchanged. Refuses (and
    leaves the file as it was) when `new` is longer than the room or when another reference
    points into the bytes it would overwrite."""
    path = Path(path)
    data = _encode(path, new)
    with _open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        info = _Dynamic(path, f).rpath()
        where = (f"{info.tag} {info.value!r} at .dynstr+{info.strtab_offset:#x} "
                 f"(file offset {info.file_offset:#x})")
        if info.shared_with:
            raise MxbuildError(
                f"{path}: cannot rewrite {where} in place: other references point into its "
                f"bytes ({', '.join(info.shared_with)})",
                "rewrite the file with patchelf --set-rpath instead")
        if len(data) > info.room:
            raise MxbuildError(
                f"{path}: the RPATH {new!r} needs {len(data)} bytes, the room in place is "
                f"{info.room} ({where})",
                f"use a path of at most {info.room} bytes, or rewrite the file with patchelf "
                "(which appends a segment that glibc <= 2.27's ldconfig calls truncated)")
        old = info.value.encode("utf-8", "surrogateescape")
        f.seek(info.file_offset)
        if f.read(len(old) + 1) != old + b"\0":
            raise MxbuildError(f"{path}: changed while being edited ({where})")
        f.seek(info.file_offset)
        f.write(data + b"\0" * (max(len(old), len(data)) - len(data) + 1))
        f.flush()
        if os.fstat(f.fileno()).st_size != size:     # cannot happen; never let it pass
            raise MxbuildError(f"{path}: its size changed during an in-place edit")


def _encode(path: Path, new: str) -> bytes:
    data = new.encode("utf-8")
    if not data or b"\0" in data:
        raise MxbuildError(f"{path}: an RPATH must be a non-empty string without NUL "
                           f"bytes, not {new!r}")
    return data


def _open(path: Path, mode: str) -> BinaryIO:
    try:
        return open(path, mode)
    except OSError as exc:
        raise MxbuildError(f"{path}: cannot open for an in-place ELF edit: {exc.strerror}")


class _Dynamic:
    """The dynamic segment of an open shared object and the references into DT_STRTAB."""

    def __init__(self, path: Path, f: BinaryIO):
        self.path, self.f = path, f
        self.size = os.fstat(f.fileno()).st_size
        try:
            self.elf = ELFFile(f)
            self._check_kind()
            self._read_segments()
            self._read_strtab()
            self.refs = self._references()
        except (ELFError, struct.error, EOFError, ValueError) as exc:
            raise MxbuildError(f"{path}: not a readable ELF shared object ({exc})")

    def _fail(self, problem: str) -> MxbuildError:
        return MxbuildError(f"{self.path}: {problem}")

    def _check_kind(self) -> None:
        elf = self.elf
        kind = (elf.elfclass, elf.little_endian, elf["e_machine"], elf["e_type"])
        if kind != (64, True, "EM_X86_64", "ET_DYN"):
            order = "little-endian" if elf.little_endian else "big-endian"
            raise self._fail(
                f"ELF{elf.elfclass} {order} {elf['e_machine']} {elf['e_type']}: only x86-64 "
                "little-endian ELF64 shared objects (ET_DYN) can be edited in place")

    # -------------------------------------------------------------- segments and tags

    def _read_segments(self) -> None:
        elf = self.elf
        phdr = elf.structs.Elf_Phdr
        headers = [struct_parse(phdr, self.f, elf["e_phoff"] + i * elf["e_phentsize"])
                   for i in range(elf.num_segments())]
        self.loads = [h for h in headers if h["p_type"] == "PT_LOAD"]
        dynamic = [h for h in headers if h["p_type"] == "PT_DYNAMIC"]
        if len(dynamic) != 1:
            raise self._fail(f"{len(dynamic)} PT_DYNAMIC segments: not a dynamic shared object")
        dyn = dynamic[0]
        if dyn["p_offset"] + dyn["p_filesz"] > self.size:
            raise self._fail("its dynamic segment lies past the end of the file")
        if self.offset(dyn["p_vaddr"], dyn["p_filesz"]) != dyn["p_offset"]:
            raise self._fail("PT_DYNAMIC's file offset disagrees with its PT_LOAD")
        entry = elf.structs.Elf_Dyn
        slots = dyn["p_filesz"] // entry.sizeof()
        self.entries: list[tuple[object, int]] = []   # (tag, value) up to DT_NULL
        for i in range(slots):
            parsed = struct_parse(entry, self.f, dyn["p_offset"] + i * entry.sizeof())
            if parsed["d_tag"] == "DT_NULL":
                break
            self.entries.append((parsed["d_tag"], parsed["d_val"]))
        else:
            raise self._fail("its dynamic segment has no DT_NULL terminator")
        # DT_NULL slots after the terminator (ld's --spare-dynamic-tags, 5 by default)
        self.spare_slots = slots - len(self.entries) - 1

    def offset(self, vaddr: int, size: int = 1) -> int:
        """File offset of [vaddr, vaddr+size), which must lie in one PT_LOAD's file bytes."""
        for h in self.loads:
            if h["p_vaddr"] <= vaddr and vaddr + size <= h["p_vaddr"] + h["p_filesz"]:
                return vaddr - h["p_vaddr"] + h["p_offset"]
        raise self._fail(f"address {vaddr:#x} (+{size}) is not in the file bytes of any "
                         "PT_LOAD segment")

    def tag(self, name) -> int | None:
        values = [v for t, v in self.entries if t == name]
        if len(values) > 1:
            raise self._fail(f"{len(values)} {name} entries in its dynamic segment")
        return values[0] if values else None

    def _read_strtab(self) -> None:
        addr, size = self.tag("DT_STRTAB"), self.tag("DT_STRSZ")
        if addr is None or not size:
            raise self._fail("no DT_STRTAB/DT_STRSZ in its dynamic segment")
        self.strtab_file_offset = self.offset(addr, size)
        self.f.seek(self.strtab_file_offset)
        self.strtab = self.f.read(size)
        if len(self.strtab) != size or self.strtab[-1:] != b"\0":
            raise self._fail("its dynamic string table is cut short or not NUL-terminated")

    # -------------------------------------------------------------------- references

    def _references(self) -> list[tuple[int, str]]:
        """(offset into DT_STRTAB, what refers to it) for everything that names a string."""
        unread = [t for t, _ in self.entries if t in UNREAD_TAGS]
        if unread:
            raise self._fail(f"has {unread[0]} (a prelink list), whose strings are not read")
        refs = [(v, str(t) if isinstance(t, str) else f"tag {t:#x}")
                for t, v in self.entries if t in STRING_TAGS]
        refs += self._symbol_refs()
        refs += self._verdef_refs()
        refs += self._verneed_refs()
        for off, what in refs:
            if off >= len(self.strtab):
                raise self._fail(f"{what} points at .dynstr+{off:#x}, past DT_STRSZ "
                                 f"({len(self.strtab):#x})")
        return refs

    def _symbol_count(self) -> int:
        counts = []
        gnu = self.tag("DT_GNU_HASH")
        if gnu is not None:
            counts.append(GNUHashTable(self.elf, self.offset(gnu, 16), None)
                          .get_number_of_symbols())
        sysv = self.tag("DT_HASH")
        if sysv is not None:
            self.f.seek(self.offset(sysv, 8) + 4)          # nbucket, nchain: Elf_Word each
            counts.append(struct.unpack("<I", self.f.read(4))[0])
        counts.append(self._dynsym_section_count())
        return max(counts)

    def _dynsym_section_count(self) -> int:
        """Entries of the SHT_DYNSYM section at DT_SYMTAB, when the section headers make
        sense (UPX leaves them pointing into compressed data): else 0."""
        elf, symtab = self.elf, self.tag("DT_SYMTAB")
        if not elf["e_shoff"] or elf["e_shentsize"] != elf.structs.Elf_Shdr.sizeof():
            return 0
        try:
            count = elf.num_sections()
            if count > 0xFFFFFF or elf["e_shoff"] + count * elf["e_shentsize"] > self.size:
                return 0
            for i in range(count):
                h = struct_parse(elf.structs.Elf_Shdr, self.f,
                                 elf["e_shoff"] + i * elf["e_shentsize"])
                if h["sh_type"] == "SHT_DYNSYM" and h["sh_addr"] == symtab and h["sh_entsize"]:
                    return h["sh_size"] // h["sh_entsize"]
        except (ELFError, struct.error, EOFError, ValueError):
            return 0
        return 0

    def _symbol_refs(self) -> list[tuple[int, str]]:
        symtab = self.tag("DT_SYMTAB")
        if symtab is None:
            return []
        syment = self.tag("DT_SYMENT") or self.elf.structs.Elf_Sym.sizeof()
        count = self._symbol_count()
        if count == 0:
            return []
        self.f.seek(self.offset(symtab, count * syment))
        table = self.f.read(count * syment)
        # st_name is the first Elf_Word of Elf64_Sym (and Elf32_Sym)
        return [(name, "symbol") for (name,) in struct.iter_unpack(f"<I{syment - 4}x", table)
                if name]

    def _chain(self, tag: str, count_tag: str, record, link: str):
        """Records of a version chain (verdef/verneed): yields (file offset, record)."""
        addr = self.tag(tag)
        if addr is None:
            return
        limit = self.tag(count_tag) or MAX_VERSION_RECORDS
        off = self.offset(addr, record.sizeof())
        for _ in range(min(limit, MAX_VERSION_RECORDS)):
            parsed = struct_parse(record, self.f, off)
            yield off, parsed
            if not parsed[link]:
                return
            off += parsed[link]

    def _verdef_refs(self) -> list[tuple[int, str]]:
        s, refs = self.elf.structs, []
        for off, vd in self._chain("DT_VERDEF", "DT_VERDEFNUM", s.Elf_Verdef, "vd_next"):
            aux = off + vd["vd_aux"]
            for _ in range(vd["vd_cnt"]):
                vda = struct_parse(s.Elf_Verdaux, self.f, aux)
                refs.append((vda["vda_name"], "version definition"))
                if not vda["vda_next"]:
                    break
                aux += vda["vda_next"]
        return refs

    def _verneed_refs(self) -> list[tuple[int, str]]:
        s, refs = self.elf.structs, []
        for off, vn in self._chain("DT_VERNEED", "DT_VERNEEDNUM", s.Elf_Verneed, "vn_next"):
            refs.append((vn["vn_file"], "version need (file)"))
            aux = off + vn["vn_aux"]
            for _ in range(vn["vn_cnt"]):
                vna = struct_parse(s.Elf_Vernaux, self.f, aux)
                refs.append((vna["vna_name"], "version need"))
                if not vna["vna_next"]:
                    break
                aux += vna["vna_next"]
        return refs

    def string_at(self, off: int) -> bytes:
        return self.strtab[off:self.strtab.index(b"\0", off)]

    # ------------------------------------------------------------------------ RPATH

    def rpath(self) -> RpathInfo:
        mine = [(t, v) for t, v in self.entries if t in RPATH_TAGS]
        if not mine:
            raise self._fail("no DT_RPATH or DT_RUNPATH: there is no string to rewrite in place")
        offsets = {v for _, v in mine}
        if len(mine) > 2 or len(offsets) > 1 or len({t for t, _ in mine}) != len(mine):
            shown = ", ".join(f"{t} {self.string_at(v)!r}" for t, v in mine)
            raise self._fail(f"several RPATH entries ({shown}): not edited in place")
        start = offsets.pop()
        end = self.strtab.index(b"\0", start)          # the old string's NUL
        others = [(r, what) for r, what in self.refs
                  if not (r == start and what in RPATH_TAGS)]
        # the first referenced byte after the NUL bounds the room; references at or before
        # the NUL that reach into the string (tail merging) share its bytes
        after = min((r for r, _ in others if r > end), default=len(self.strtab))
        shared = sorted({f"{what} {self.string_at(r).decode('utf-8', 'replace')!r} at "
                         f".dynstr+{r:#x}" for r, what in others
                         if r <= end and self.strtab.index(b"\0", r) >= start})
        return RpathInfo(
            path=self.path, tag="+".join(t for t in RPATH_TAGS if t in dict(mine)),
            value=self.strtab[start:end].decode("utf-8", "surrogateescape"),
            strtab_offset=start, file_offset=self.strtab_file_offset + start,
            room=after - start - 1, shared_with=tuple(shared))
