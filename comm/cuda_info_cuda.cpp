#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdio>

#include "comm/cuda_info.h"

namespace glmpipe {

namespace {
std::string cuda_version_string(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }
std::string nccl_version_string(int v) {
  // NCCL_VERSION(X,Y,Z) = X*10000 + Y*100 + Z since 2.9
  return std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." + std::to_string(v % 100);
}
}  // namespace

CudaInfo cuda_info() {
  CudaInfo info;
  info.built = true;
  info.cuda_compiled = cuda_version_string(CUDART_VERSION);
  info.nccl_compiled = nccl_version_string(NCCL_VERSION_CODE);
  int v = 0;
  if (cudaRuntimeGetVersion(&v) == cudaSuccess) info.cuda_runtime = cuda_version_string(v);
  if (ncclGetVersion(&v) == ncclSuccess) info.nccl_runtime = nccl_version_string(v);
  int n = 0;
  const cudaError_t rc = cudaGetDeviceCount(&n);
  if (rc != cudaSuccess) {
    info.no_device = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(rc);
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return info;
  }
  info.devices = n;
  if (n == 0) info.no_device = "cudaGetDeviceCount: 0 devices";
  for (int d = 0; d < n; ++d) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, d) != cudaSuccess) continue;
    char buf[256];
    std::snprintf(buf, sizeof(buf), "%s (sm_%d%d, %.1f GiB)", p.name, p.major, p.minor,
                  p.totalGlobalMem / 1073741824.0);
    info.device_names.push_back(buf);
  }
  return info;
}

}  // namespace glmpipe
