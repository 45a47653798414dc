# Variant cu101 (follows MXNet's config/distribution/linux_cu101.cmake).
include(${CMAKE_CURRENT_LIST_DIR}/common.cmake)
set(USE_CUDA ON CACHE BOOL "Build with CUDA support")
set(USE_CUDNN ON CACHE BOOL "Build with cuDNN support")
set(USE_NCCL ON CACHE BOOL "Build with NCCL support")
# NVIDIA's devel images install the toolkit here; a distro toolkit overrides it.
set(CMAKE_CUDA_COMPILER "/usr/local/cuda-10.1/bin/nvcc" CACHE STRING "CUDA compiler")
set(MXNET_CUDA_ARCH "3.0;5.0;6.0;7.0;7.5" CACHE STRING "CUDA architectures")
