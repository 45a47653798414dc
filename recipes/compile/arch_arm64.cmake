# Architecture layer arm64 (AArch64), read before the variant's preset (`cmake -C
# arch_arm64.cmake -C <preset>.cmake`: the first file to set a value wins).
# Cross-compiled on the amd64 build machines (never under emulation) with Debian's cross
# toolchain and the distro's :arm64 libraries: toolchain_arm64.cmake. Upstream's
# config/distribution/linux_aarch64_cpu.cmake links Arm Performance Libraries (BLAS and
# oneDNN's kernels), which cannot be redistributed: this build uses the distro's OpenBLAS.
set(CMAKE_TOOLCHAIN_FILE "${CMAKE_CURRENT_LIST_DIR}/toolchain_arm64.cmake"
    CACHE FILEPATH "Cross toolchain: Debian's aarch64-linux-gnu compilers")
# The baseline every arm64 server runs (ARMv8.0-A: Graviton 1-4, Ampere Altra, Neoverse,
# Cortex-A72): no SVE, and none of the optional crc/crypto extensions upstream's CFLAGS
# name (an entry MXNet's CMake never reads). Atomics: GCC >= 10 compiles them as calls
# that use LSE instructions where the CPU has them (-moutline-atomics is its default on
# aarch64 Linux: checked in the compile images of Debian 11, 12 and 13).
set(CMAKE_C_FLAGS "-march=armv8-a" CACHE STRING "Flags used by the C compiler")
set(CMAKE_CXX_FLAGS "-march=armv8-a" CACHE STRING "Flags used by the C++ compiler")
# x86 instruction sets: none (mshadow would add -msse3 / -mf16c).
set(USE_SSE OFF CACHE BOOL "Build with x86 SSE instruction support")
set(USE_F16C OFF CACHE BOOL "Build with x86 F16C instruction support")
# oneDNN: off. Without Arm's libraries (ACL, ArmPL) its aarch64 kernels are reference
# loops, slower than MXNet's own operators on OpenBLAS (matrix.yaml: MKLDNN false for the
# arm64 builds).
set(USE_MKLDNN OFF CACHE BOOL "Build with MKL-DNN (oneDNN) support")
# The :arm64 libprotobuf (common.cmake's glob would take any architecture's).
set(Protobuf_LIBRARY "/usr/lib/aarch64-linux-gnu/libprotobuf.so" CACHE FILEPATH
    "The shared libprotobuf")
