# Variant cpu (follows MXNet's config/distribution/linux_cpu.cmake).
include(${CMAKE_CURRENT_LIST_DIR}/common.cmake)
set(USE_CUDA OFF CACHE BOOL "Build with CUDA support")
set(USE_CUDNN OFF CACHE BOOL "Build with cuDNN support")
set(USE_NCCL OFF CACHE BOOL "Build with NCCL support")
