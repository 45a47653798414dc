# CMake toolchain: compile for arm64 (AArch64 Linux) on an amd64 Debian or Ubuntu machine
# with Debian's cross toolchain (crossbuild-essential-arm64: aarch64-linux-gnu-gcc/g++,
# its binutils, the cross libc in /usr/aarch64-linux-gnu) and the distro's :arm64
# development packages, installed next to the machine's own by multiarch: their libraries
# and CMake/pkg-config files in /usr/lib/aarch64-linux-gnu, their headers in /usr/include.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# find_library/find_package search lib/aarch64-linux-gnu of each prefix (never the
# machine's own lib/x86_64-linux-gnu).
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
# The cross root first, then the multiarch directories of / (BOTH); programs (protoc, the
# build machine's) from the machine only.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# pkg-config sees the arm64 .pc files only (what Debian's <triplet>-pkg-config wrapper
# sets); it runs at configure time, while this file is read.
set(ENV{PKG_CONFIG_LIBDIR}
    "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
