"""The build matrix: matrix.yaml's model (model.py), its schema (schema.py) and the cell
selectors (selectors.py)."""
from .model import (STAGING, Abi, Architecture, BaseSpec, BootstrapSpec, Cell, CompileSpec,
                    CrossSpec, Distro, JarPin, JvmBuildSpec, KeyringPackage, Matrix,
                    PackageSpec, Packaging, SmokeSpec, SourcePin, Tolerance, WheelPin,
                    deb_version)
from .schema import load, parse
from .selectors import cell_globs, select

__all__ = ["STAGING", "Abi", "Architecture", "BaseSpec", "BootstrapSpec", "Cell",
           "CompileSpec", "CrossSpec", "Distro", "JarPin", "JvmBuildSpec", "KeyringPackage",
           "Matrix", "PackageSpec", "Packaging", "SmokeSpec", "SourcePin", "Tolerance",
           "WheelPin",
           "cell_globs", "deb_version", "load", "parse", "select"]
