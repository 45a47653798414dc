#!/bin/sh
# Compile libmxnet.so with CMake + Ninja from a source tree, inside the compile image,
# as the build user, with no network.
#   build.sh SRC ARCH_LAYER PRESET OUT JOBS [CMAKE_ARG...]
# ARCH_LAYER (arch_<arch>.cmake: flags, instruction sets, a cross toolchain) is read
# before the variant's PRESET: the first file to set a cache value wins.
# Needs CCACHE_DIR (a cache volume) and PATCHELF. Writes OUT/libmxnet.so (stripped,
# SONAME libmxnet.so, no RPATH) and, for the caller's checks: OUT/cmake-cache.txt (the
# cache entries the preset controls), OUT/ccache-stats.txt, OUT/dyn-syms.txt,
# OUT/elf-header.txt (readelf -h: the machine it is for) and OUT/ninja-log.txt (Ninja's
# .ninja_log: every step's start and end, for bench/compile_steps.py).
set -eu
src=$1 layer=$2 preset=$3 out=$4 jobs=$5
shift 5
build="$HOME/build"
command -v cmake >/dev/null && command -v ninja >/dev/null && command -v ccache >/dev/null || {
    echo "compile: cmake, ninja and ccache must be in the compile image" >&2; exit 3; }
cmake --version | head -n1
ccache --zero-stats >/dev/null

cmake -S "$src" -B "$build" -G Ninja -C "$layer" -C "$preset" \
    -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
    -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache "$@"
# Only the library ships: the target `mxnet` (libmxnet.so and what it links), not `all`
# (MXNet's tests/ subdirectory, im2rec and the example extension libraries are always
# part of `all`, whatever the preset says).
cmake --build "$build" --target mxnet --parallel "$jobs"

# MXNet's CMake writes the library at the top of the build tree.
lib="$build/libmxnet.so"
if [ ! -f "$lib" ]; then
    echo "compile: the build produced no $lib" >&2
    exit 4
fi
mkdir -p "$out"
cp "$lib" "$out/libmxnet.so"
cp "$build/.ninja_log" "$out/ninja-log.txt"
# The binutils of the toolchain that compiled it (aarch64-linux-gnu-strip in a cross
# compile): CMake found them next to the compiler.
strip=$(sed -n 's/^CMAKE_STRIP:FILEPATH=//p' "$build/CMakeCache.txt")
# Debian policy: no symbol tables or build-host notes in shipped libraries.
"${strip:-strip}" --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$out/libmxnet.so"
# The build tree's RPATH must not ship; Depends supply every library from the distro.
"$PATCHELF" --remove-rpath "$out/libmxnet.so"
soname=$(readelf -d "$out/libmxnet.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libmxnet.so ] || "$PATCHELF" --set-soname libmxnet.so "$out/libmxnet.so"
chmod 0644 "$out/libmxnet.so"

grep -E '^(CMAKE_BUILD_TYPE|CMAKE_(C|CXX|CUDA)_COMPILER_LAUNCHER|CMAKE_CUDA_COMPILER|CMAKE_(C|CXX)_FLAGS|USE_[A-Z0-9_]+|MXNET_CUDA_ARCH|BUILD_CPP_EXAMPLES|BUILD_TESTING|Protobuf_LIBRARY|CMAKE_TOOLCHAIN_FILE):' \
    "$build/CMakeCache.txt" | sort > "$out/cmake-cache.txt"
ccache --show-stats > "$out/ccache-stats.txt"
# readelf reads the ELF files of every architecture
readelf --dyn-syms --wide "$out/libmxnet.so" > "$out/dyn-syms.txt"
readelf -h "$out/libmxnet.so" > "$out/elf-header.txt"
cat "$out/ccache-stats.txt"
