// Per-unit resident bytes of ChatGLM-6B, from a config (synthesized shapes) or shared with the
// checkpoint path (model_metadata_checkpoint.cpp). Rules in model_metadata.h.
#include "planner/model_metadata.h"

#include <cstdlib>

#include "common/error.h"
#include "planner/limits.h"

namespace glmpipe {

int64_t dtype_bytes(const std::string& dtype) {
  if (dtype == "float32") return 4;
  if (dtype == "float16" || dtype == "bfloat16") return 2;
  GLMPIPE_FAIL() << "dtype \"" << dtype << "\" is not a compute dtype (allowed: float32, float16, bfloat16)";
  return 0;
}

int64_t ModelMetadata::total_weight_bytes() const {
  int64_t total = 0;
  for (const UnitInfo& u : units) total += u.weight_bytes;
  if (lm_head_tied) total -= lm_head().weight_bytes;
  return total;
}

namespace detail {

static bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

int unit_index_of(const std::string& name, int num_layers) {
  static const std::string kLayers = "transformer.layers.";
  if (ends_with(name, "rotary_emb.inv_freq")) return -1;
  if (name.rfind("transformer.word_embeddings.", 0) == 0) return 0;
  if (name.rfind("transformer.final_layernorm.", 0) == 0) return num_layers + 1;
  if (name.rfind("lm_head.", 0) == 0) return num_layers + 2;
  if (name.rfind(kLayers, 0) == 0) {
    size_t end = name.find('.', kLayers.size());
    std::string id = name.substr(kLayers.size(), end - kLayers.size());
    char* stop = nullptr;
    long v = std::strtol(id.c_str(), &stop, 10);
    GLMPIPE_CHECK(!id.empty() && *stop == '\0' && v >= 0 && v < num_layers)
        << "tensor " << name << ": layer id \"" << id << "\" is not in 0.." << num_layers - 1;
    return 1 + static_cast<int>(v);
  }
  GLMPIPE_FAIL() << "tensor " << name << " belongs to no placement unit (known: transformer.word_embeddings.*, "
                 << "transformer.layers.N.*, transformer.final_layernorm.*, lm_head.*)";
  return -1;
}

int64_t resident_bytes(const std::string& name, const std::vector<int64_t>& shape, bool stored_integer,
                       int64_t stored_bytes, const std::string& dtype, const std::string& quantization) {
  if (ends_with(name, "rotary_emb.inv_freq")) return 0;
  if (stored_integer || ends_with(name, ".weight_scale")) return stored_bytes;  // already quantized
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  bool quantized_linear = ends_with(name, "attention.query_key_value.weight") ||
                          ends_with(name, "attention.dense.weight") ||
                          ends_with(name, "mlp.dense_h_to_4h.weight") ||
                          ends_with(name, "mlp.dense_4h_to_h.weight");
  if (!quantization.empty() && quantized_linear) {
    GLMPIPE_CHECK(shape.size() == 2) << "tensor " << name << " is not a matrix";
    int64_t out = shape[0];
    int64_t packed = quantization == "int4" ? (numel + 1) / 2 : numel;  // two nibbles per byte
    GLMPIPE_CHECK(quantization == "int4" || quantization == "int8")
        << "quantization \"" << quantization << "\" (allowed: int8, int4)";
    return packed + out * 2;  // + one fp16 scale per output row
  }
  return numel * dtype_bytes(dtype);
}

std::vector<UnitInfo> empty_units(int num_layers) {
  std::vector<UnitInfo> units;
  units.push_back({"transformer.word_embeddings", 0});
  for (int i = 0; i < num_layers; ++i) units.push_back({"transformer.layers." + std::to_string(i), 0});
  units.push_back({"transformer.final_layernorm", 0});
  units.push_back({"lm_head", 0});
  return units;
}

}  // namespace detail

ModelMetadata synthesize_metadata(const ModelConfig& cfg, const std::string& dtype,
                                  const std::string& quantization) {
  GLMPIPE_CHECK(cfg.num_layers > 0 && cfg.hidden_size > 0 && cfg.vocab_size > 0 && cfg.inner_hidden_size > 0)
      << "config: num_layers, hidden_size, inner_hidden_size and vocab_size must be positive";
  GLMPIPE_CHECK(cfg.num_layers <= limits::kMaxLayers)  // before building 12 names per layer
      << "config: num_layers " << cfg.num_layers << " exceeds the planner's limit of " << limits::kMaxLayers;
  ModelMetadata m;
  m.config = cfg;
  m.dtype = dtype;
  dtype_bytes(dtype);  // validates
  m.quantization = quantization;
  if (m.quantization.empty() && cfg.quantization_bit != 0)
    m.quantization = cfg.quantization_bit == 4 ? "int4" : "int8";
  m.source = "synthesized from config";
  const int L = static_cast<int>(cfg.num_layers);
  const int64_t H = cfg.hidden_size, I = cfg.inner_hidden_size, V = cfg.vocab_size;
  m.units = detail::empty_units(L);
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    int idx = detail::unit_index_of(name, L);
    if (idx < 0) return;
    m.units[static_cast<size_t>(idx)].weight_bytes +=
        detail::resident_bytes(name, shape, false, 0, dtype, m.quantization);
  };
  add("transformer.word_embeddings.weight", {V, H});
  for (int i = 0; i < L; ++i) {  // chatglm-spec §1.3
    const std::string p = "transformer.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {H});
    add(p + "input_layernorm.bias", {H});
    add(p + "attention.query_key_value.weight", {3 * H, H});
    add(p + "attention.query_key_value.bias", {3 * H});
    add(p + "attention.dense.weight", {H, H});
    add(p + "attention.dense.bias", {H});
    add(p + "post_attention_layernorm.weight", {H});
    add(p + "post_attention_layernorm.bias", {H});
    add(p + "mlp.dense_h_to_4h.weight", {I, H});
    add(p + "mlp.dense_h_to_4h.bias", {I});
    add(p + "mlp.dense_4h_to_h.weight", {H, I});
    add(p + "mlp.dense_4h_to_h.bias", {H});
  }
  add("transformer.final_layernorm.weight", {H});
  add("transformer.final_layernorm.bias", {H});
  if (m.quantization.empty()) {
    add("lm_head.weight", {V, H});  // the float checkpoint stores it (equal to the embedding)
  } else {
    m.lm_head_tied = true;  // quantized checkpoints store the embedding once
    m.units.back().weight_bytes = m.units.front().weight_bytes;
  }
  return m;
}

}  // namespace glmpipe
