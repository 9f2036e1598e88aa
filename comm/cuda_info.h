// What this build and this machine offer for GPU ranks: the CUDA and NCCL versions compiled in (and
// loaded), and the devices present. Safe on a machine without a GPU or driver (devices = 0 and
// `no_device` says why). Used by `glmpipe version`, the GPU tests' skip messages and the device check.
#pragma once

#include <string>
#include <vector>

namespace glmpipe {

struct CudaInfo {
  bool built = false;          // GLMPIPE_HAVE_CUDA
  std::string cuda_compiled;   // "13.0" (CUDART_VERSION of the headers)
  std::string cuda_runtime;    // the loaded libcudart ("13.0"), empty when unknown
  std::string nccl_compiled;   // "2.28.9" (NCCL_VERSION_CODE of nccl.h)
  std::string nccl_runtime;    // the loaded libnccl (ncclGetVersion)
  int devices = 0;
  std::vector<std::string> device_names;  // "NVIDIA H200 (sm_90, 139.8 GiB)"
  std::string no_device;       // why devices == 0 ("cudaGetDeviceCount: no CUDA-capable device ...")
};

CudaInfo cuda_info();

}  // namespace glmpipe
