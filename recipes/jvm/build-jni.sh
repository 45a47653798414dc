#!/bin/sh
# Compile libmxnet-scala.so, the JNI library of MXNet's Scala/Java API, from a source
# tree's scala-package/native (one translation unit) against the tree's headers and JDK 8's
# JNI headers, linked dynamically against libmxnet.so. Runs in the cell's JNI image (its
# build image + g++, so only this distro's libstdc++ is needed) as the build user, with no
# network.
#   build-jni.sh SRC JNI_INCLUDE LIBDIR OUT
# LIBDIR holds the libmxnet.so to link (and its private directory, for the linker's view
# of what that needs). Output: OUT/libmxnet-scala.so (stripped, mode 0644),
# OUT/dyn-syms.txt (readelf --dyn-syms: the symbol versions it needs), OUT/elf-header.txt
# (readelf -h: the machine it is for).
# Environment: ARCH (the Debian architecture it is for; default amd64); for a cross
# compile CXX, STRIP and NM of the cross toolchain (aarch64-linux-gnu-g++ …). JDK's
# jni_md.h is the same file on every Linux architecture (jlong by _LP64).
#
# Compiler flags: upstream's (scala-package/native/pom.xml, profile linux-x86_64; for arm64
# the baseline of recipes/compile/arch_arm64.cmake instead of its x86 instruction sets)
# plus Debian's hardening; no SONAME (a JNI library is loaded by file name, never linked
# against) and no RPATH (libmxnet.so is installed in /usr/lib/<multiarch>).
set -eu
src=$1 jni=$2 lib=$3 out=$4
native="$src/scala-package/native/src/main/native"
so="$out/libmxnet-scala.so"
mkdir -p "$out"
rpath_link="-Wl,-rpath-link,$lib"
if [ -d "$lib/libmxnet" ]; then rpath_link="$rpath_link -Wl,-rpath-link,$lib/libmxnet"; fi
case "${ARCH:-amd64}" in
    amd64) arch_flags="-msse3 -mf16c" ;;
    # mshadow's headers include x86 intrinsics unless told otherwise: the same definitions
    # libmxnet.so was compiled with (USE_SSE/USE_F16C OFF in arch_arm64.cmake)
    arm64) arch_flags="-march=armv8-a -DMSHADOW_USE_SSE=0 -DMSHADOW_USE_F16C=0" ;;
    *) echo "build-jni: no compiler flags for architecture $ARCH" >&2; exit 6 ;;
esac
${CXX:-g++} --version | head -n 1
set -x
${CXX:-g++} -std=c++0x -O3 -DNDEBUG=1 -fPIC $arch_flags \
    -DMSHADOW_USE_MKL=0 -DMSHADOW_USE_CUDA=0 \
    -Wall -Wsign-compare -Wno-unused-parameter -Wno-unknown-pragmas -Wno-unused-local-typedefs \
    -fstack-protector-strong -D_FORTIFY_SOURCE=2 \
    -I"$native" -I"$jni" -I"$jni/linux" -I"$src/include" \
    -I"$src/3rdparty/dmlc-core/include" -I"$src/3rdparty/mshadow" \
    -I"$src/3rdparty/dlpack/include" -I"$src/3rdparty/tvm/nnvm/include" \
    -shared -o "$so" "$native/org_apache_mxnet_native_c_api.cc" \
    -Wl,-z,relro,-z,now -L"$lib" $rpath_link -lmxnet
set +x
${STRIP:-strip} --strip-unneeded --remove-section=.comment --remove-section=.note "$so"
chmod 0644 "$so"
dynamic=$(readelf -d "$so")
echo "$dynamic" | grep -E 'NEEDED|SONAME|RPATH|RUNPATH'
if ! echo "$dynamic" | grep -q '(NEEDED).*\[libmxnet\.so\]'; then
    echo "build-jni: libmxnet-scala.so does not link libmxnet.so" >&2
    exit 3
fi
if echo "$dynamic" | grep -qE '\((SONAME|RPATH|RUNPATH)\)'; then
    echo "build-jni: libmxnet-scala.so has a SONAME, RPATH or RUNPATH" >&2
    exit 4
fi
exported=$(${NM:-nm} -D --defined-only "$so" | grep -c ' T Java_org_apache_mxnet_' || true)
if [ "$exported" -eq 0 ]; then
    echo "build-jni: libmxnet-scala.so exports no Java_org_apache_mxnet_* function" >&2
    exit 5
fi
echo "exports $exported JNI functions"
readelf --dyn-syms --wide "$so" > "$out/dyn-syms.txt"
readelf -h "$so" > "$out/elf-header.txt"
