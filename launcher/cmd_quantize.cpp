// `glmpipe quantize IN_DIR OUT_DIR --bits 4|8 [--shard-size-mb N | --shards K]`: writes a pre-quantized checkpoint
// in the published int4/int8 layout (spec §3: block Linear `weight` int8 [out, in] or packed
// [out, in/2] + fp16 `weight_scale` [out]; every other tensor as stored), as sharded safetensors with
// an index and IN_DIR's config.json plus "quantization_bit". Loading it skips quantize-at-load (a 6B
// model opens in seconds: the int weights are mmapped, nothing is converted) and gives the same
// logits bit for bit: the int weights come from the same quantize_rows as `--quantize int4|int8`.
// Other files of IN_DIR (tokenizer, configuration code) are copied.
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "checkpoint/checkpoint.h"
#include "common/error.h"
#include "launcher/command.h"
#include "model/quant.h"

namespace {

namespace fs = std::filesystem;

struct QuantizeOptions {
  std::string in_dir, out_dir;
  int bits = 4;
  int64_t shard_size_mb = 2048;
  int shards = 0;  // 0: from shard_size_mb
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The block Linear weights the published layout stores quantized (ChatGLM-6B and ChatGLM2/3 names).
bool quantized_key(const std::string& name) {
  if (name.find(".layers.") == std::string::npos) return false;
  for (const char* s : {".query_key_value.weight", ".attention.dense.weight", ".self_attention.dense.weight",
                        ".dense_h_to_4h.weight", ".dense_4h_to_h.weight"})
    if (ends_with(name, s)) return true;
  return false;
}

bool weight_file(const std::string& f) {
  return ends_with(f, ".bin") || ends_with(f, ".safetensors") || ends_with(f, ".index.json") || f == "config.json";
}

void run_quantize(const QuantizeOptions& o) {
  GLMPIPE_CHECK(o.bits == 4 || o.bits == 8) << "quantize: --bits must be 4 or 8, got " << o.bits;
  GLMPIPE_CHECK(fs::absolute(o.in_dir) != fs::absolute(o.out_dir)) << "quantize: OUT_DIR must differ from IN_DIR";
  const auto t0 = std::chrono::steady_clock::now();
  glmpipe::Checkpoint ck = glmpipe::Checkpoint::open(o.in_dir);
  GLMPIPE_CHECK(ck.config().quantization_bit == 0)
      << o.in_dir << "/config.json: already quantized (quantization_bit " << ck.config().quantization_bit << ")";
  std::vector<std::pair<std::string, at::Tensor>> out;
  int64_t total = 0, nq = 0;
  for (const glmpipe::TensorInfo& t : ck.tensors()) {
    if (quantized_key(t.name)) {
      GLMPIPE_CHECK(t.shape.size() == 2 && (o.bits == 8 || t.shape[1] % 2 == 0))
          << o.in_dir << ": " << t.name << " has shape of rank " << t.shape.size() << ", cannot quantize";
      // From the float weight as quantize-at-load reads it (fp32: exact for fp16/bf16 storage).
      auto [q, scale] = glmpipe::quantize_rows(ck.load(t.name, at::kFloat), o.bits);
      const std::string stem = t.name.substr(0, t.name.size() - std::string(".weight").size());
      total += q.nbytes() + scale.nbytes();
      out.emplace_back(t.name, q);
      out.emplace_back(stem + ".weight_scale", scale);
      ++nq;
    } else {
      at::Tensor m = ck.map(t.name);  // as stored, zero copy
      total += m.nbytes();
      out.emplace_back(t.name, m);
    }
  }
  GLMPIPE_CHECK(nq > 0) << o.in_dir << ": no block Linear weights found to quantize";
  glmpipe::WriteOptions w;
  w.format = glmpipe::CheckpointFormat::kSafetensors;
  const int64_t shard_bytes = std::max<int64_t>(1, o.shard_size_mb) << 20;
  w.shards = static_cast<int>(std::min<int64_t>(static_cast<int64_t>(out.size()), (total + shard_bytes - 1) / shard_bytes));
  w.shards = std::max(1, w.shards);
  if (o.shards > 0) w.shards = std::min<int>(o.shards, static_cast<int>(out.size()));
  glmpipe::write_checkpoint(o.out_dir, ck.config(), out, w);
  // config.json: IN_DIR's own (every field kept) plus the quantization, replacing the one written
  // from ModelConfig.
  nlohmann::ordered_json cfg;
  {
    std::ifstream f(o.in_dir + "/config.json");
    GLMPIPE_CHECK(f.good()) << o.in_dir << "/config.json: cannot read";
    cfg = nlohmann::ordered_json::parse(f, nullptr, false);
    GLMPIPE_CHECK(!cfg.is_discarded() && cfg.is_object()) << o.in_dir << "/config.json: not a JSON object";
  }
  cfg["quantization_bit"] = o.bits;
  {
    std::ofstream f(o.out_dir + "/config.json", std::ios::trunc);
    f << cfg.dump(2) << "\n";
    GLMPIPE_CHECK(f.good()) << o.out_dir << "/config.json: write failed";
  }
  for (const auto& e : fs::directory_iterator(o.in_dir))
    if (e.is_regular_file() && !weight_file(e.path().filename().string()))
      fs::copy_file(e.path(), fs::path(o.out_dir) / e.path().filename(), fs::copy_options::overwrite_existing);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "wrote " << o.out_dir << ": " << nq << " Linear weights as int" << o.bits << ", " << out.size()
            << " tensors, " << total / 1e9 << " GB in " << w.shards << " safetensors shard(s), " << s << " s\n";
}

glmpipe::CommandRegistrar reg("quantize", "Write a pre-quantized int4/int8 checkpoint (published layout)",
                              [](CLI::App& sub) {
  auto o = std::make_shared<QuantizeOptions>();
  sub.add_option("in_dir", o->in_dir, "float checkpoint directory")->required();
  sub.add_option("out_dir", o->out_dir, "output directory (created)")->required();
  sub.add_option("--bits", o->bits, "4|8")->check(CLI::IsMember({4, 8}))->required();
  sub.add_option("--shard-size-mb", o->shard_size_mb, "target shard size")->check(CLI::PositiveNumber)->capture_default_str();
  sub.add_option("--shards", o->shards, "number of shards (overrides --shard-size-mb)")->check(CLI::PositiveNumber);
  sub.callback([o] { run_quantize(*o); });
});

}  // namespace
