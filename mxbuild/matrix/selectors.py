"""Pick cells by variant, CUDA version, distro, MXNet version or id glob (braces allowed).

Pure functions over cells: an unknown value or an empty selection is a SelectionError
that lists what would have been valid. Without --arch only the primary architecture's
cells are selected (`--arch all` selects every one).
"""
from __future__ import annotations

import fnmatch
import re
from typing import Iterable

import bracex

from ..errors import SelectionError
from .model import Cell


def _values(arg) -> list[str]:
    if arg is None or arg == "":
        return []
    items = arg if isinstance(arg, (list, tuple)) else [arg]
    return [v.strip() for item in items for v in str(item).split(",") if v.strip()]


def cell_globs(arg) -> list[str]:
    """'*-cpu-*,1.9.1-cu11{2,7}-*' -> ['*-cpu-*', '1.9.1-cu112-*', '1.9.1-cu117-*'].

    Commas outside braces separate globs: wrapping the whole argument as one more brace
    alternative ("{…,}") lets bracex split those and expand nested braces in one go (the
    trailing empty alternative keeps a single glob from being taken literally)."""
    if not arg:
        return []
    text = ",".join(str(a) for a in arg) if isinstance(arg, (list, tuple)) else str(arg)
    return [g.strip() for g in bracex.expand("{" + text + ",}") if g.strip()]


def _cuda_matches(want: str, cuda: str | None) -> bool:
    if want in ("none", "cpu"):
        return cuda is None
    if cuda is None:
        return False
    return cuda == want or ("." not in want and cuda.split(".")[0] == want)


# params: one per selector flag (--variant, --cuda, --distro, --mxnet, --cell, --arch)
def select(cells: Iterable[Cell], variant=None, cuda=None, distro=None, mxnet=None,
           cell=None, arch=None, known_arches: tuple[str, ...] = ()) -> list[Cell]:
    cells = list(cells)
    # Like cibuildwheel's `archs: auto`: without --arch only the primary architecture (the
    # build machines' own) is selected; other architectures are asked for by name or "all".
    arches = _values(arch)
    if not arches:
        chosen = [c for c in cells if c.arch.primary]
    elif arches == ["all"]:
        chosen, arches = cells, []
    else:
        chosen = cells
    for want in arches:
        if want not in {c.arch.name for c in cells}:
            known = sorted(set(known_arches) | {c.arch.name for c in cells})
            built = sorted({c.arch.name for c in cells})
            raise SelectionError(
                f"--arch {want!r} matches no cell of the matrix",
                f"known architectures: {', '.join(known)}; builds cover {', '.join(built)}"
                + (f" (no build of matrix.yaml lists {want}: add it to a build's "
                   "`architectures`)" if want in known_arches else ""))
    checks = [
        ("--arch", arches, sorted({c.arch.name for c in cells}),
         lambda want, c: c.arch.name == want),
        ("--variant", _values(variant), sorted({c.variant for c in cells}),
         lambda want, c: c.variant == want),
        ("--distro", _values(distro), sorted({c.distro.name for c in cells}),
         lambda want, c: c.distro.name == want),
        ("--mxnet", _values(mxnet), sorted({c.mxnet for c in cells}),
         lambda want, c: c.mxnet == want),
    ]
    for flag, wants, valid, match in checks:
        for want in wants:
            if want not in valid:
                raise SelectionError(f"{flag} {want!r} matches no cell of the matrix",
                                     f"use one of: {', '.join(valid)}")
        if wants:
            chosen = [c for c in chosen if any(match(w, c) for w in wants)]
    cudas = _values(cuda)
    if cudas:
        valid = sorted({c.cuda for c in cells if c.cuda})
        for want in cudas:
            if not re.match(r"^(\d+(\.\d+)?|none|cpu)$", want):
                raise SelectionError(f"--cuda {want!r} is malformed",
                                     "give a major version (9), major.minor (11.2) or none")
            if not any(_cuda_matches(want, c.cuda) for c in cells):
                raise SelectionError(f"--cuda {want!r} matches no cell of the matrix",
                                     f"use one of: {', '.join(valid) or '(no CUDA cells)'}, none")
        chosen = [c for c in chosen if any(_cuda_matches(w, c.cuda) for w in cudas)]
    globs = cell_globs(cell)
    if globs:
        chosen = [c for c in chosen if any(fnmatch.fnmatchcase(c.id, g) for g in globs)]
    if not chosen:
        if not _values(arch) and any(not c.arch.primary for c in cells):
            others = select(cells, variant, cuda, distro, mxnet, cell, "all", known_arches)
            raise SelectionError(
                "the selection matches no cell of the primary architecture",
                "without --arch only the primary architecture is built; add --arch "
                + ",".join(sorted({c.arch.name for c in others})) + " (or --arch all) for "
                + ", ".join(c.id for c in others))
        raise SelectionError(
            "the selection matches no cell",
            "valid cells are: " + ", ".join(c.id for c in cells) + " (see `invoke matrix`)")
    return chosen
