// Per-unit resident bytes of any family, from a config (the schema's shapes) or shared with the
// checkpoint path (model_metadata_checkpoint.cpp). Rules in model_metadata.h.
#include "planner/model_metadata.h"

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

int64_t ModelMetadata::kv_bytes_per_token_layer() const {
  return glmpipe::kv_bytes_per_token_layer(config, dtype_bytes(dtype));
}

namespace detail {

int64_t resident_bytes(const TensorSpec* spec, const ModelSchema& schema, const std::vector<int64_t>& shape,
                       bool stored_integer, int64_t stored_bytes, const std::string& dtype,
                       const std::string& quantization) {
  const ParamSpec* p = spec ? &schema.param_of(*spec) : nullptr;
  if (p && p->kind == ParamKind::kIgnored) return 0;
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  if (spec && spec->scale) return numel * 4;  // stored fp16, kept in fp32 (Shard::load reads kFloat)
  if (stored_integer) return stored_bytes;    // already quantized
  const bool quantized_linear = p && p->kind == ParamKind::kLinear && p->quantizable && !spec->integer &&
                                spec->name == p->name + ".weight";
  if (!quantization.empty() && quantized_linear) {
    GLMPIPE_CHECK(shape.size() == 2) << "tensor " << spec->name << " is not a matrix";
    GLMPIPE_CHECK(quantization == "int4" || quantization == "int8")
        << "quantization \"" << quantization << "\" (allowed: int8, int4)";
    const int64_t out = shape[0];
    const int64_t packed = quantization == "int4" ? (numel + 1) / 2 : numel;  // two nibbles per byte
    return packed + out * 4;  // + one scale per output row (fp16 values, kept in fp32)
  }
  return numel * dtype_bytes(dtype);
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
  ModelConfig float_cfg = cfg;  // float shapes; the quantization rule sizes the block Linears
  float_cfg.quantization_bit = 0;
  const ModelSchema schema = model_schema(float_cfg);
  for (const std::string& name : schema.units) m.units.push_back({name, 0});
  for (const TensorSpec& t : schema.tensors()) {
    const ParamSpec& p = schema.param_of(t);
    if (p.kind == ParamKind::kHead && !p.tied_to.empty()) {
      m.lm_head_tied = true;  // tied (config tie_word_embeddings): the head is the embedding matrix
      m.units.back().weight_bytes = m.units.front().weight_bytes;
      continue;
    }
    m.units[static_cast<size_t>(p.unit)].weight_bytes +=
        detail::resident_bytes(&t, schema, t.shape, false, 0, dtype, m.quantization);
  }
  return m;
}

}  // namespace glmpipe
