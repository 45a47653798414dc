# Settings every distribution build of libmxnet shares. They follow MXNet's own
# config/distribution/linux_*.cmake (1.9.x); each variant preset includes this file first.
# Used as `cmake -C <preset>.cmake`: every value is a cache default the command line can
# still override.
set(CMAKE_BUILD_TYPE "Distribution" CACHE STRING "Build type")
# Binaries must run on any x86-64 host the apt repository serves: no AVX.
set(CFLAGS "-mno-avx" CACHE STRING "CFLAGS")
set(CXXFLAGS "-mno-avx" CACHE STRING "CXXFLAGS")

set(USE_OPENCV ON CACHE BOOL "Build with OpenCV support")
set(USE_OPENMP ON CACHE BOOL "Build with OpenMP support")
set(USE_MKL_IF_AVAILABLE OFF CACHE BOOL "Use Intel MKL if found")
set(USE_MKLDNN ON CACHE BOOL "Build with MKL-DNN (oneDNN) support")
set(USE_BLAS "open" CACHE STRING "BLAS library: OpenBLAS")
set(USE_LAPACK ON CACHE BOOL "Build with LAPACK support")
set(USE_TVM_OP OFF CACHE BOOL "Enable use of the TVM operator build system")
set(USE_SSE ON CACHE BOOL "Build with x86 SSE instruction support")
set(USE_F16C OFF CACHE BOOL "Build with x86 F16C instruction support")
set(USE_LIBJPEG_TURBO ON CACHE BOOL "Build with libjpeg-turbo")
set(USE_DIST_KVSTORE ON CACHE BOOL "Build with distributed KVStore support")
set(USE_SIGNAL_HANDLER ON CACHE BOOL "Print a stack trace on fatal signals")
