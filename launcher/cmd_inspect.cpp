// `glmpipe inspect DIR`: lists the tensors of a checkpoint (name, dtype, shape, bytes, file) without
// reading tensor bytes. `--load-layers A-B` (inclusive) instead loads every tensor of layers A..B
// converted to --dtype, keeps them, and prints one JSON line with the bytes loaded and the process
// peak RSS (VmHWM) before and after, which is how the loader's memory bound is tested.
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "checkpoint/checkpoint.h"
#include "common/error.h"
#include "launcher/command.h"

namespace {

struct InspectOptions {
  std::string dir;
  std::string load_layers;
  std::string dtype = "float32";
};

int64_t status_kb(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1));
  return -1;
}

void run_inspect(const InspectOptions& o) {
  glmpipe::Checkpoint ckpt = glmpipe::Checkpoint::open(o.dir);
  if (o.load_layers.empty()) {
    for (const auto& t : ckpt.tensors()) {
      std::ostringstream shape;
      for (size_t i = 0; i < t.shape.size(); ++i) shape << (i ? "x" : "") << t.shape[i];
      std::cout << t.name << "\t" << t.dtype << "\t[" << shape.str() << "]\t" << t.nbytes << "\t" << t.file << "\n";
    }
    return;
  }
  int64_t first = -1, last = -1;
  char dash = 0;
  std::istringstream ls(o.load_layers);
  ls >> first >> dash >> last;
  GLMPIPE_CHECK(ls && dash == '-' && first >= 0 && first <= last && last < ckpt.config().num_layers)
      << "--load-layers " << o.load_layers << ": expected A-B with 0 <= A <= B < " << ckpt.config().num_layers;
  static const std::map<std::string, at::ScalarType> kDtypes = {
      {"float32", at::kFloat}, {"float16", at::kHalf}, {"bfloat16", at::kBFloat16}};
  const at::ScalarType dtype = kDtypes.at(o.dtype);
  const int64_t hwm_before = status_kb("VmHWM");
  std::vector<at::Tensor> kept;
  int64_t loaded = 0, largest_disk = 0, largest_loaded = 0;
  for (int64_t l = first; l <= last; ++l) {
    const std::string prefix = "transformer.layers." + std::to_string(l) + ".";
    for (const auto& t : ckpt.tensors()) {
      if (t.name.rfind(prefix, 0) != 0) continue;
      at::Tensor x = ckpt.load(t.name, at::isFloatingType(t.dtype) ? dtype : t.dtype);
      const int64_t n = x.numel() * x.element_size();
      loaded += n;
      largest_loaded = std::max(largest_loaded, n);
      largest_disk = std::max(largest_disk, t.nbytes);
      kept.push_back(x);
    }
  }
  nlohmann::json j;
  j["loaded_bytes"] = loaded;
  j["tensors"] = kept.size();
  j["largest_tensor_disk_bytes"] = largest_disk;
  j["largest_tensor_loaded_bytes"] = largest_loaded;
  j["vmhwm_before_kb"] = hwm_before;
  j["vmhwm_after_kb"] = status_kb("VmHWM");
  j["vmrss_after_kb"] = status_kb("VmRSS");
  std::cout << j.dump() << "\n";
}

glmpipe::CommandRegistrar reg("inspect", "List (or load a layer range of) a checkpoint's tensors", [](CLI::App& sub) {
  auto o = std::make_shared<InspectOptions>();
  sub.add_option("dir", o->dir, "checkpoint directory")->required();
  sub.add_option("--load-layers", o->load_layers, "load layers A-B (inclusive) and report peak RSS as JSON");
  sub.add_option("--dtype", o->dtype, "dtype for --load-layers: float32|float16|bfloat16")
      ->check(CLI::IsMember({"float32", "float16", "bfloat16"}))->capture_default_str();
  sub.callback([o] { run_inspect(*o); });
});

}  // namespace
