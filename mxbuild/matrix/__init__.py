"""The build matrix: matrix.yaml's model (model.py), its schema (schema.py) and the cell
selectors (selectors.py). What a recipe takes of its own (a jar pin, a source release, a
compile preset) is the recipe's: its module parses it (Recipe.parse_inputs)."""
from .model import (OUTCOMES, STAGING, Abi, Architecture, BaseSpec, BootstrapSpec, Cell,
                    CrossSpec, Distro, KeyringPackage, KnownOutcome, Matrix, PackageSpec,
                    Packaging, SmokeSpec, Tolerance, UpstreamTestFile, UpstreamTests, WheelPin,
                    deb_version)
from .schema import BuildScope, load, parse
from .selectors import cell_globs, select

__all__ = ["OUTCOMES", "STAGING", "Abi", "Architecture", "BaseSpec", "BootstrapSpec",
           "BuildScope", "Cell", "CrossSpec", "Distro", "KeyringPackage", "KnownOutcome",
           "Matrix", "PackageSpec", "Packaging", "SmokeSpec", "Tolerance", "UpstreamTestFile",
           "UpstreamTests", "WheelPin", "cell_globs", "deb_version", "load", "parse", "select"]
