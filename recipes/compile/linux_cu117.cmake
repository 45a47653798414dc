# Variant cu117 (follows MXNet's config/distribution/linux_cu117.cmake).
include(${CMAKE_CURRENT_LIST_DIR}/common.cmake)
set(USE_CUDA ON CACHE BOOL "Build with CUDA support")
set(USE_CUDNN ON CACHE BOOL "Build with cuDNN support")
set(USE_NCCL ON CACHE BOOL "Build with NCCL support")
# NVIDIA's devel images install the toolkit here; a distro toolkit overrides it.
set(CMAKE_CUDA_COMPILER "/usr/local/cuda-11.7/bin/nvcc" CACHE STRING "CUDA compiler")
set(MXNET_CUDA_ARCH "5.0;6.0;7.0;8.0;8.6" CACHE STRING "CUDA architectures")
