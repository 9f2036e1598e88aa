# The one libtorch of glmpipe: the PyPI wheel torch==2.11.0 (CUDA 13.0, NCCL 2.28.9, CXX11 ABI),
# installed by scripts/setup.sh into .venv/. The same binary runs CPU ranks on a machine without a GPU
# (it has no link dependency on the driver) and GPU ranks where one is present.
#
# GLMPIPE_TORCH_DIR: the wheel's torch/ folder (default: .venv's; the device check passes the GPU
# machine's /opt/torch/.venv one). Sets, for the rest of the build:
#   torch                 imported target, includes through a mirror without fmt/ (see below)
#   GLMPIPE_TORCH_LIB     torch/lib (libtorch*, libc10*, the wheel's libgomp)
#   GLMPIPE_NVIDIA_DIR    site-packages/nvidia (cu13/lib: libcudart; nccl/: libnccl + nccl.h)
#   glmpipe_openmp        -fopenmp, linked against the wheel's libgomp (one OpenMP runtime)
set(GLMPIPE_TORCH_VERSION 2.11.0)
set(GLMPIPE_TORCH_DIR "" CACHE PATH "torch/ folder of the torch==${GLMPIPE_TORCH_VERSION} wheel (default: .venv's)")
if(NOT GLMPIPE_TORCH_DIR)
  file(GLOB _torch_cfg ${PROJECT_SOURCE_DIR}/.venv/lib/python3*/site-packages/torch/share/cmake/Torch/TorchConfig.cmake)
  if(NOT _torch_cfg)
    message(FATAL_ERROR "glmpipe: no torch wheel in ${PROJECT_SOURCE_DIR}/.venv: run `bash scripts/setup.sh` "
                        "(it installs torch==${GLMPIPE_TORCH_VERSION} from PyPI), or pass -DGLMPIPE_TORCH_DIR=<site-packages>/torch")
  endif()
  list(GET _torch_cfg 0 _torch_cfg)
  get_filename_component(_dir "${_torch_cfg}/../../../.." ABSOLUTE)
  set(GLMPIPE_TORCH_DIR "${_dir}" CACHE PATH "" FORCE)
endif()
if(NOT EXISTS "${GLMPIPE_TORCH_DIR}/share/cmake/Torch/TorchConfig.cmake")
  message(FATAL_ERROR "glmpipe: GLMPIPE_TORCH_DIR=${GLMPIPE_TORCH_DIR} has no share/cmake/Torch/TorchConfig.cmake")
endif()
set(GLMPIPE_TORCH_LIB "${GLMPIPE_TORCH_DIR}/lib")
get_filename_component(GLMPIPE_NVIDIA_DIR "${GLMPIPE_TORCH_DIR}/../nvidia" ABSOLUTE)

# Pitfall 1: TorchConfig's find_package(Caffe2 PATHS ...) searches the system prefixes before its
# PATHS, so Debian's libtorch-dev (1.13) would win. Name both packages' folders explicitly.
set(Torch_DIR "${GLMPIPE_TORCH_DIR}/share/cmake/Torch" CACHE PATH "" FORCE)
set(Caffe2_DIR "${GLMPIPE_TORCH_DIR}/share/cmake/Caffe2" CACHE PATH "" FORCE)
# Pitfall 3: torch's CMake replaces CMAKE_CUDA_ARCHITECTURES by -gencode flags from this list (and
# would probe the GPUs of the build machine without it). A100 (8.0) and H100/H200 (9.0).
set(TORCH_CUDA_ARCH_LIST "8.0;9.0" CACHE STRING "CUDA architectures of glmpipe's kernels" FORCE)
# TorchConfig's find_library calls search the system first too: its libraries, named in advance.
set(TORCH_LIBRARY "${GLMPIPE_TORCH_LIB}/libtorch.so" CACHE FILEPATH "" FORCE)
set(c10_LIBRARY "${GLMPIPE_TORCH_LIB}/libc10.so" CACHE FILEPATH "" FORCE)
set(C10_CUDA_LIBRARY "${GLMPIPE_TORCH_LIB}/libc10_cuda.so" CACHE FILEPATH "" FORCE)
set(kineto_LIBRARY "${GLMPIPE_TORCH_LIB}/libtorch_cpu.so" CACHE FILEPATH "kineto is inside libtorch_cpu" FORCE)
file(GLOB _nvrtc "${GLMPIPE_NVIDIA_DIR}/cu13/lib/libnvrtc.so.13")
if(_nvrtc)  # torch's own link line names nvrtc through these
  set(CUDA_nvrtc_LIBRARY "${_nvrtc}" CACHE FILEPATH "" FORCE)
  set(CUDA_NVRTC_LIB "${_nvrtc}" CACHE FILEPATH "" FORCE)
endif()
# The wheel's nvrtc/cudart are found by torch's FindCUDAToolkit in the toolkit; the imports are
# pointed at the wheel's own files below (pitfall 5).
find_package(Torch ${GLMPIPE_TORCH_VERSION} EXACT REQUIRED)
if(NOT TORCH_LIBRARY MATCHES "^${GLMPIPE_TORCH_LIB}/")
  message(FATAL_ERROR "glmpipe: libtorch found at ${TORCH_LIBRARY}, not in ${GLMPIPE_TORCH_LIB}")
endif()
message(STATUS "glmpipe: libtorch ${Torch_VERSION} from ${GLMPIPE_TORCH_DIR}")

# Pitfall 2: the wheel ships fmt 12 headers in torch/include/fmt; Debian's spdlog is built against fmt
# 9 (/usr/include/fmt) and breaks when fmt 12 comes first. The torch targets include a mirror of
# torch/include (symlinks) that has everything but fmt/; no header glmpipe uses needs torch's fmt.
set(_mirror "${CMAKE_BINARY_DIR}/torch-include")
file(MAKE_DIRECTORY "${_mirror}")
file(GLOB _entries RELATIVE "${GLMPIPE_TORCH_DIR}/include" "${GLMPIPE_TORCH_DIR}/include/*")
foreach(_e ${_entries})
  if(NOT _e STREQUAL "fmt" AND NOT EXISTS "${_mirror}/${_e}")
    file(CREATE_LINK "${GLMPIPE_TORCH_DIR}/include/${_e}" "${_mirror}/${_e}" SYMBOLIC)
  endif()
endforeach()
foreach(_t torch torch_cpu torch_cuda c10 c10_cuda torch_library)
  if(TARGET ${_t})
    get_target_property(_inc ${_t} INTERFACE_INCLUDE_DIRECTORIES)
    if(_inc)
      string(REPLACE "${GLMPIPE_TORCH_DIR}/include" "${_mirror}" _inc "${_inc}")
      set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_inc}")
    endif()
  endif()
endforeach()

# Pitfall 5: exactly one libcudart and one libnccl per process, the wheel's (libtorch_cuda loads them
# through its RPATH): glmpipe's CUDA code links those same files, never the toolkit's copies.
set(GLMPIPE_CUDART "${GLMPIPE_NVIDIA_DIR}/cu13/lib/libcudart.so.13")
set(GLMPIPE_NCCL_LIBRARY "${GLMPIPE_NVIDIA_DIR}/nccl/lib/libnccl.so.2")
set(GLMPIPE_NCCL_INCLUDE "${GLMPIPE_NVIDIA_DIR}/nccl/include")
foreach(_f ${GLMPIPE_CUDART} ${GLMPIPE_NCCL_LIBRARY} ${GLMPIPE_NCCL_INCLUDE}/nccl.h)
  if(NOT EXISTS "${_f}")
    message(FATAL_ERROR "glmpipe: ${_f} is missing (the torch wheel's nvidia-* packages; rerun scripts/setup.sh)")
  endif()
endforeach()
if(TARGET CUDA::cudart)
  set_target_properties(CUDA::cudart PROPERTIES IMPORTED_LOCATION "${GLMPIPE_CUDART}")
endif()
if(TARGET CUDA::nvrtc AND _nvrtc)
  set_target_properties(CUDA::nvrtc PROPERTIES IMPORTED_LOCATION "${_nvrtc}")
endif()

# Pitfall 4: libtorch_cpu loads the wheel's libgomp.so.1 (it shadows gcc's: same soname, older
# GOMP_ symbol versions). glmpipe's -fopenmp files link that same library, so a GOMP_ symbol the
# wheel's runtime lacks fails at link time instead of at start-up.
find_package(OpenMP REQUIRED COMPONENTS CXX)
add_library(glmpipe_openmp INTERFACE)
target_compile_options(glmpipe_openmp INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${OpenMP_CXX_FLAGS}>)
target_link_libraries(glmpipe_openmp INTERFACE "${GLMPIPE_TORCH_LIB}/libgomp.so.1" Threads::Threads)
