// `glmpipe version`: build facts (torch version, threads, the CUDA/NCCL versions compiled in and the
// GPUs present). Contract (issue 14): "cuda: <version>" and "nccl: <version>" lines when compiled in.
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/version.h>

#include <iostream>

#include "comm/cuda_info.h"
#include "launcher/command.h"

namespace {
glmpipe::CommandRegistrar reg("version", "Print version and build configuration", [](CLI::App& sub) {
  sub.callback([] {
    const glmpipe::CudaInfo c = glmpipe::cuda_info();
    std::cout << "glmpipe 0.1.0\n";
    std::cout << "torch: " << TORCH_VERSION << "\n";
    if (c.built) {
      std::cout << "cuda: " << c.cuda_compiled << " (runtime " << (c.cuda_runtime.empty() ? "?" : c.cuda_runtime) << ")\n";
      std::cout << "nccl: " << c.nccl_compiled << " (runtime " << (c.nccl_runtime.empty() ? "?" : c.nccl_runtime) << ")\n";
    } else {
      std::cout << "cuda/nccl: not compiled\n";
    }
    if (c.devices == 0) std::cout << "gpu: no GPU present (" << c.no_device << ")\n";
    for (size_t d = 0; d < c.device_names.size(); ++d) std::cout << "gpu: cuda:" << d << " " << c.device_names[d] << "\n";
    std::cout << at::show_config();
  });
});
}  // namespace
