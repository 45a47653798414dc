"""Give MXNet 1.9's Python code the numpy names it uses that newer numpy removed.

Loaded at interpreter start-up by a .pth file in the smoke client's venv, only on distros
whose Python has no numpy MXNet 1.9 was written for (noble: numpy 1.26, trixie: numpy 2).
Names that exist are left alone; the native library under test is untouched.
"""
import numpy

_ALIASES = {
    # removed in numpy 1.24
    "bool": bool, "int": int, "float": float, "complex": complex, "object": object, "str": str,
    # removed in numpy 2.0
    "PZERO": 0.0, "NZERO": -0.0, "PINF": float("inf"), "NINF": -float("inf"),
    "NAN": float("nan"), "NaN": float("nan"), "Inf": float("inf"), "Infinity": float("inf"),
    "infty": float("inf"), "float_": numpy.float64, "complex_": numpy.complex128,
    "unicode_": numpy.str_, "string_": numpy.bytes_, "round_": numpy.round,
    "alltrue": numpy.all, "sometrue": numpy.any, "product": numpy.prod,
    "cumproduct": numpy.cumprod, "msort": lambda a: numpy.sort(a, axis=0),
}


def _expired(name):
    def removed(*args, **kwargs):
        raise RuntimeError("numpy.%s was removed from numpy; use numpy_financial" % name)
    return removed


for _name, _value in _ALIASES.items():
    numpy.__dict__.setdefault(_name, _value)
# numpy < 2 answered these with a function raising RuntimeError; MXNet re-exports them.
for _name in ("fv", "ipmt", "irr", "mirr", "nper", "npv", "pmt", "ppmt", "pv", "rate"):
    numpy.__dict__.setdefault(_name, _expired(_name))
