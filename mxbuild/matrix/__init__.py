"""The build matrix: matrix.yaml's model (model.py), its schema (schema.py) and the cell
selectors (selectors.py)."""
from .model import (OUTCOMES, STAGING, Abi, Architecture, BaseSpec, BootstrapSpec, Cell,
                    CompileSpec, CrossSpec, Distro, JarPin, JvmBuildSpec, KeyringPackage,
                    KnownOutcome, Matrix, PackageSpec, Packaging, SmokeSpec, SourcePin,
                    Tolerance, UpstreamTestFile, UpstreamTests, WheelPin, deb_version)
from .schema import load, parse
from .selectors import cell_globs, select

__all__ = ["OUTCOMES", "STAGING", "Abi", "Architecture", "BaseSpec", "BootstrapSpec", "Cell",
           "CompileSpec", "CrossSpec", "Distro", "JarPin", "JvmBuildSpec", "KeyringPackage",
           "KnownOutcome", "Matrix", "PackageSpec", "Packaging", "SmokeSpec", "SourcePin",
           "Tolerance", "UpstreamTestFile", "UpstreamTests", "WheelPin", "cell_globs",
           "deb_version", "load", "parse", "select"]
