# Included by MXNet's top-level project(mxnet …) (CMAKE_PROJECT_mxnet_INCLUDE, set in
# common.cmake): compile options for single MXNet sources, where a defect of a released
# tree needs a compiler setting to behave. Source properties are per directory: this runs
# in MXNet's top-level directory, where the target `mxnet` and its sources are defined.

# Issue 27: MXNet 1.9.1's oneDNN Deconvolution crashed (SIGSEGV in test_deconvolution and
# test_gluon's test_deconv) when compiled by GCC 12. MKLDNNDeconvFwd/Bwd's
# CreatePrimitiveDesc, CreateDataPrimitiveDesc and CreateWeightsPrimitiveDesc construct a
# primitive_desc from a temporary operation descriptor (`ddc.CreateFwdDesc()`); oneDNN's
# primitive_desc iterator keeps a pointer to that descriptor, and the loop below it calls
# next_impl() after the temporary's lifetime ended (a use after scope; fixed upstream after
# 1.9.1 by "Fix next_impl in deconvolution", apache/mxnet#20750, on v1.9.x as #21051).
# GCC 12 gives the dead temporary's stack slot to later temporaries, so next_impl() reads
# another object as its descriptor. The descriptor is trivially destructible and next_impl()
# runs in the same function: without stack slot reuse its bytes stay intact there.
set(_mxbuild_deconv "${CMAKE_CURRENT_SOURCE_DIR}/src/operator/nn/mkldnn/mkldnn_deconvolution.cc")
# MXNet calls project(mxnet) twice: append once.
get_property(_mxbuild_opts SOURCE "${_mxbuild_deconv}" PROPERTY COMPILE_OPTIONS)
if(EXISTS "${_mxbuild_deconv}" AND NOT "-fstack-reuse=none" IN_LIST _mxbuild_opts)
  set_property(SOURCE "${_mxbuild_deconv}" APPEND PROPERTY COMPILE_OPTIONS -fstack-reuse=none)
  message(STATUS "mxbuild: ${_mxbuild_deconv} compiled with -fstack-reuse=none (issue 27)")
endif()
