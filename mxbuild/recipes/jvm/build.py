"""What the JVM recipes take from matrix.yaml (`jvm_build:`): where scala-package is
built. A module of its own, so that source.py and the recipes read it without a circle."""
from __future__ import annotations

from dataclasses import dataclass

from ...matrix import Cell, Distro

INPUT_NAME = "jvm"     # JvmHalfRecipe.input_name: the key of Cell.inputs


@dataclass(frozen=True)
class JvmBuildSpec:
    """Where MXNet's scala-package (the thin jar) is built by the recipes that make the JVM
    half from source: MXNet 1.x's Scala 2.11 compiler runs on JDK 8 only, so a distro that
    still ships one, and that JDK's package."""
    distro: Distro
    jdk: str                             # e.g. openjdk-8-jdk-headless


def jvm_build(cell: Cell) -> JvmBuildSpec | None:
    """Where the cell's scala-package is built (matrix `jvm_build:`), or None."""
    return cell.input_of(INPUT_NAME)
