// Family dispatch and the schema helpers (model/family.h).
#include "model/family.h"

#include <cstdlib>
#include <sstream>

#include "common/error.h"

namespace glmpipe {

namespace detail {
std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}
}  // namespace detail

std::vector<TensorSpec> ModelSchema::tensors() const {
  std::vector<TensorSpec> out;
  for (size_t i = 0; i < params.size(); ++i) {
    const ParamSpec& p = params[i];
    const int idx = static_cast<int>(i);
    if (p.kind != ParamKind::kLinear) {
      out.push_back({p.name, p.shape, false, false, idx});
      continue;
    }
    const int64_t o = p.shape.at(0), in = p.shape.at(1);
    if (p.quantizable && quantization_bit != 0) {
      out.push_back({p.name + ".weight", {o, quantization_bit == 4 ? in / 2 : in}, true, false, idx});
      out.push_back({p.name + ".weight_scale", {o}, false, true, idx});
    } else {
      out.push_back({p.name + ".weight", {o, in}, false, false, idx});
    }
    if (p.bias) out.push_back({p.name + ".bias", {o}, false, false, idx});
  }
  return out;
}

const TensorSpec* ModelSchema::find(const std::string& name) const {
  if (tensors_.empty()) {
    tensors_ = tensors();
    for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
  }
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

int64_t ModelSchema::layer_of(const std::string& name) const {
  if (name.rfind(layer_prefix, 0) != 0) return -1;
  const size_t dot = name.find('.', layer_prefix.size());
  const std::string id = name.substr(layer_prefix.size(), dot - layer_prefix.size());
  char* stop = nullptr;
  const long v = std::strtol(id.c_str(), &stop, 10);
  GLMPIPE_CHECK(!id.empty() && *stop == '\0' && v >= 0 && dot != std::string::npos)
      << "tensor " << name << ": layer id \"" << id << "\" is not a number";
  return v;
}

ModelSchema model_schema(const ModelConfig& c) {
  switch (c.family) {
    case Family::kChatGLM: return detail::chatglm_schema(c);
    case Family::kChatGLM2: return detail::chatglm2_schema(c);
  }
  GLMPIPE_FAIL() << "unknown model family";
  return {};
}

int64_t kv_bytes_per_token_layer(const ModelConfig& c, int64_t elem_bytes) {
  return 2 * c.kv_heads() * c.head_dim() * elem_bytes;
}

int64_t kv_bytes_per_token(const ModelConfig& c, int64_t elem_bytes) {
  return c.num_layers * kv_bytes_per_token_layer(c, elem_bytes);
}

int64_t block_activation_width(const ModelConfig& c) {
  switch (c.family) {
    case Family::kChatGLM: return 3 * c.hidden_size + c.inner_hidden_size;
    case Family::kChatGLM2:
      return (c.num_attention_heads + 2 * c.kv_heads()) * c.head_dim() + 2 * c.inner_hidden_size;
  }
  return 0;
}

PromptLayout prompt_layout(const ModelConfig& c, const std::vector<int64_t>& ids) {
  switch (c.family) {
    case Family::kChatGLM: return detail::chatglm_prompt_layout(c, ids);
    case Family::kChatGLM2: return PromptLayout{0, 0};  // plain causal positions
  }
  return {};
}

void check_tensor(const ModelSchema& s, const std::string& where, const std::string& name,
                  const std::vector<int64_t>& shape, bool stored_int8, bool stored_float,
                  const std::string& dtype_name) {
  const int64_t layer = s.layer_of(name);
  GLMPIPE_CHECK(layer < s.num_layers)
      << where << ": tensor " << name << " names a layer outside config.json's num_layers " << s.num_layers;
  const TensorSpec* t = s.find(name);
  if (!t) return;
  GLMPIPE_CHECK(shape == t->shape)
      << where << ": tensor " << name << " has shape " << detail::shape_string(shape) << " but config.json implies "
      << detail::shape_string(t->shape)
      << (s.quantization_bit ? " (quantization_bit " + std::to_string(s.quantization_bit) + ")" : "");
  GLMPIPE_CHECK(!t->integer || stored_int8)
      << where << ": tensor " << name << " has dtype " << dtype_name
      << " but a quantized weight (quantization_bit " << s.quantization_bit << ") must be int8";
  GLMPIPE_CHECK(t->integer || stored_float)
      << where << ": tensor " << name << " has dtype " << dtype_name
      << " but ChatGLM stores it as floating point (float32, float16 or bfloat16)";
}

}  // namespace glmpipe
