// cuda_info() for builds without CUDA (cuda_info_cuda.cpp replaces it).
#include "comm/cuda_info.h"

#ifndef GLMPIPE_HAVE_CUDA
namespace glmpipe {

CudaInfo cuda_info() {
  CudaInfo info;
  info.no_device = "glmpipe was built without CUDA";
  return info;
}

}  // namespace glmpipe
#endif
