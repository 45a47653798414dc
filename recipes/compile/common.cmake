# Settings every distribution build of libmxnet shares. They follow MXNet's own
# config/distribution/linux_*.cmake (1.9.x); each variant preset includes this file first.
# Used as `cmake -C arch_<arch>.cmake -C <preset>.cmake`: every value is a cache default
# the command line can still override, and the first file to set a value wins, so what
# differs between architectures (instruction sets, compiler flags, oneDNN; the cross
# toolchain) lives in the architecture layer, arch_amd64.cmake or arch_arm64.cmake.
# Checked against the real 1.9.1 tree (CMakeLists.txt line numbers below are 1.9.1's);
# see the compile notes for why each differs from upstream's file.
set(CMAKE_BUILD_TYPE "Distribution" CACHE STRING "Build type")
# Per-source compile options for defects of released trees (why: in the file itself).
set(CMAKE_PROJECT_mxnet_INCLUDE "${CMAKE_CURRENT_LIST_DIR}/mxnet_source_fixes.cmake"
    CACHE FILEPATH "Included by MXNet's project(mxnet): mxbuild's per-source options")

set(USE_OPENCV ON CACHE BOOL "Build with OpenCV support")
set(USE_OPENMP ON CACHE BOOL "Build with OpenMP support")
set(USE_MKL_IF_AVAILABLE OFF CACHE BOOL "Use Intel MKL if found")
set(USE_BLAS "open" CACHE STRING "BLAS library: OpenBLAS")
set(USE_LAPACK ON CACHE BOOL "Build with LAPACK support")
set(USE_TVM_OP OFF CACHE BOOL "Enable use of the TVM operator build system")
set(USE_DIST_KVSTORE ON CACHE BOOL "Build with distributed KVStore support")
set(USE_SIGNAL_HANDLER ON CACHE BOOL "Print a stack trace on fatal signals")
# Off, as in upstream's 1.9.1 binaries: they were compiled with CentOS 7's GCC 4.8.5, for
# which CMakeLists.txt:53 defaults intgemm off (the wheel has no intgemm operator). With
# GCC >= 12 3rdparty/intgemm (built with -Werror) also fails on warnings in GCC's own
# avx512fintrin.h.
set(USE_INTGEMM OFF CACHE BOOL "Build with the intgemm low-precision GEMM library")

# Only the library ships: no C++ package, no examples (the recipe builds the target
# `mxnet` only, so tests, im2rec and the example extension libraries are not built).
set(USE_CPP_PACKAGE OFF CACHE BOOL "Build the C++ package")
set(BUILD_CPP_EXAMPLES OFF CACHE BOOL "Build the C++ examples")
set(BUILD_TESTING OFF CACHE BOOL "Build the testing tree")

# USE_DIST_KVSTORE: ps-lite links ${PROTOBUF_LIBRARY}. The Distribution build type sets
# Protobuf_USE_STATIC_LIBS ON (CMakeLists.txt:152: upstream builds its own -fPIC
# protobuf), so FindProtobuf would take the distro's libprotobuf.a, which is not
# position-independent and cannot go into a shared library. FindProtobuf honours a
# preset Protobuf_LIBRARY: point it at the distro's shared library (-> Depends).
file(GLOB _mxbuild_protobuf /usr/lib/*-linux-gnu/libprotobuf.so /usr/lib64/libprotobuf.so
     /usr/lib/libprotobuf.so)
if(_mxbuild_protobuf)
  list(GET _mxbuild_protobuf 0 _mxbuild_protobuf)
  set(Protobuf_LIBRARY "${_mxbuild_protobuf}" CACHE FILEPATH "The shared libprotobuf")
endif()
