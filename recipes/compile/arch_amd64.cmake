# Architecture layer amd64 (x86-64), read before the variant's preset (`cmake -C
# arch_amd64.cmake -C <preset>.cmake`: the first file to set a value wins). Compiled
# natively on the amd64 build machines.
# Binaries must run on any x86-64 host the apt repository serves: no AVX. MXNet's CMake
# never reads the CFLAGS/CXXFLAGS entries upstream's preset sets (its static build passes
# -mno-avx in CC/CXX), so the flag goes where CMake uses it.
set(CMAKE_C_FLAGS "-mno-avx" CACHE STRING "Flags used by the C compiler")
set(CMAKE_CXX_FLAGS "-mno-avx" CACHE STRING "Flags used by the C++ compiler")
set(USE_SSE ON CACHE BOOL "Build with x86 SSE instruction support")
set(USE_F16C OFF CACHE BOOL "Build with x86 F16C instruction support")
set(USE_MKLDNN ON CACHE BOOL "Build with MKL-DNN (oneDNN) support")
