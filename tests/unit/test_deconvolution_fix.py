"""Issue 27, the mechanism of the Deconvolution crash and its fix, reproduced in seconds:
MXNet 1.9.1's MKLDNNDeconvFwd::CreatePrimitiveDesc pattern (tests/fixtures/onednn_next_impl)
compiled as MXNet's Distribution build compiles it (-O3, the amd64 layer's -mno-avx) against
the distro's oneDNN. GCC 12 (Debian 12's) gives the dead temporary operation descriptor's
stack slot to later temporaries, so next_impl() reads another object; with the compile
option recipes/compile/mxnet_source_fixes.cmake sets for mkldnn_deconvolution.cc, the
descriptor next_impl() reads is intact."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ..conftest import ROOT
from ..require import need_tools, skip_or_fail

FIXTURE = Path(__file__).parent.parent / "fixtures" / "onednn_next_impl"
WRAP = ["-Wl,--wrap=dnnl_primitive_desc_iterator_create",
        "-Wl,--wrap=dnnl_primitive_desc_iterator_next"]


def _recipe_options() -> list[str]:
    text = (ROOT / "recipes/compile/mxnet_source_fixes.cmake").read_text()
    (options,) = re.findall(r"mkldnn_deconvolution\.cc.*?COMPILE_OPTIONS ([^)\n]+)\)", text,
                            re.S)
    return options.split()


def _overwritten(tmp_path: Path, extra: list[str]) -> int:
    exe = tmp_path / ("deconv" + "".join(extra))
    subprocess.run(["g++", "-std=c++17", "-O3", "-mno-avx", *extra, str(FIXTURE / "deconv_pd.cc"),
                    str(FIXTURE / "watch.cc"), "-o", str(exe), *WRAP, "-ldnnl"],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return int(re.search(r"overwritten=(\d+)", out).group(1))


def test_the_recipe_option_keeps_the_descriptor_next_impl_reads(tmp_path):
    need_tools("g++", hint="apt-get install g++")
    if not Path("/usr/include/oneapi/dnnl/dnnl.hpp").is_file():
        skip_or_fail("tools", "oneDNN's headers are not installed (fix: apt-get install "
                              "libdnnl-dev, as setup.sh does)")
    options = _recipe_options()
    assert options == ["-fstack-reuse=none"]
    assert _overwritten(tmp_path, options) == 0
    gcc = subprocess.run(["g++", "-dumpversion"], capture_output=True, text=True).stdout
    if gcc.split(".")[0] == "12":       # Debian 12's compiler: the crash's
        assert _overwritten(tmp_path, []) >= 1
