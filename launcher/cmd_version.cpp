// `glmpipe version`: build facts (torch version, threads, CUDA/NCCL compiled in or not).
#include <ATen/Parallel.h>
#include <ATen/Version.h>

#include <iostream>

#include "launcher/command.h"

namespace {
glmpipe::CommandRegistrar reg("version", "Print version and build configuration", [](CLI::App& sub) {
  sub.callback([] {
    std::cout << "glmpipe 0.1.0\n";
#ifdef GLMPIPE_HAVE_CUDA
    std::cout << "cuda/nccl: compiled in\n";
#else
    std::cout << "cuda/nccl: not compiled\n";
#endif
    std::cout << at::show_config();
  });
});
}  // namespace
