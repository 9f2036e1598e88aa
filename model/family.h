// The model-family seam: everything that differs between ChatGLM-6B (v1, model/chatglm/) and
// ChatGLM2/3 + GLM-4 (model/chatglm2/) apart from the forward pass itself, as data and small pure
// functions. Load, named_parameters, the checkpoint shape check, the planner's metadata,
// make-tiny-model and the benchmarks all read the one tensor-schema table of a family:
//
//   ModelConfig cfg = load_model_config(dir);             // family auto-detected
//   ModelSchema s = model_schema(cfg);                     // units + parameters, pipeline order
//   for (const TensorSpec& t : s.tensors()) ...            // every stored tensor: name, shape, unit
//   int64_t kv = kv_bytes_per_token(cfg, 2);               // all layers, K+V, 2-byte cache
//   PromptLayout p = prompt_layout(cfg, ids);              // positions/mask inputs of a prompt
//
// Placement units, in pipeline order (their names are the family's device-map module names):
//   0 = embedding, 1..L = blocks, L+1 = final norm, L+2 = head.
//   v1:   transformer.word_embeddings, transformer.layers.N, transformer.final_layernorm, lm_head
//   v2+:  transformer.embedding, transformer.encoder.layers.N, transformer.encoder.final_layernorm,
//         transformer.output_layer
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/model_config.h"

namespace glmpipe {

enum class ParamKind {
  kEmbedding,  // [vocab, hidden] float
  kNorm,       // one LayerNorm/RMSNorm tensor [hidden] (weight or bias) float
  kLinear,     // a Linear: `name` is the prefix; stored as .weight [out, in] (+ .bias [out]);
               // quantizable ones as int8 .weight [out, in] / [out, in/2] + .weight_scale [out]
  kHead,       // lm_head / output_layer weight [vocab, hidden] float
  kIgnored,    // stored in checkpoints, recomputed by the model (rotary inv_freq)
};

struct ParamSpec {
  std::string name;             // checkpoint key (kLinear: the prefix before .weight/.bias)
  ParamKind kind = ParamKind::kNorm;
  std::vector<int64_t> shape;   // float shape; kLinear: [out, in]
  int unit = 0;                 // placement unit index (see above)
  bool bias = false;            // kLinear: has a .bias
  bool quantizable = false;     // kLinear: a block Linear (int8/int4 storage, quantize-at-load)
  bool optional = false;        // may be absent from a checkpoint (v1 lm_head: tied)
  std::string tied_to;          // kHead: the tensor that serves when this one is absent
};

// One stored tensor, expanded from a ParamSpec for a given quantization_bit.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;   // as stored
  bool integer = false;         // stored int8 (a quantized weight)
  bool scale = false;           // a .weight_scale
  int param = -1;               // index into ModelSchema::params
};

struct ModelSchema {
  Family family = Family::kChatGLM;
  int num_layers = 0;
  int quantization_bit = 0;
  std::vector<std::string> units;  // num_layers + 3 names, pipeline order
  std::vector<ParamSpec> params;   // pipeline order, module order within a unit
  std::string layer_prefix;        // "transformer.layers." | "transformer.encoder.layers."

  // Every stored tensor (scales only when quantization_bit != 0), in params order.
  std::vector<TensorSpec> tensors() const;
  // The tensor spec of a checkpoint key, or null when the key is not in the schema.
  const TensorSpec* find(const std::string& name) const;
  // Layer id of a "<layer_prefix>N.…" key; -1 when the key has no such prefix; Error naming the
  // key when N is not a number.
  int64_t layer_of(const std::string& name) const;
  const ParamSpec& param_of(const TensorSpec& t) const { return params.at(static_cast<size_t>(t.param)); }

 private:
  mutable std::vector<TensorSpec> tensors_;       // tensors(), built on first find()
  mutable std::map<std::string, size_t> index_;   // name -> tensors_ index
};

ModelSchema model_schema(const ModelConfig& c);

// Bytes of K and V for one token in one layer / in all layers, for a cache of `elem_bytes`
// per element: 2 · kv_heads · head_dim · elem_bytes (· num_layers).
int64_t kv_bytes_per_token_layer(const ModelConfig& c, int64_t elem_bytes);
int64_t kv_bytes_per_token(const ModelConfig& c, int64_t elem_bytes);
// Widths of the widest per-token activations of one block (planner estimate): the QKV output plus
// the MLP's first projection (v1: 3H + I; v2+: (heads + 2G)·d + 2·ffn).
int64_t block_activation_width(const ModelConfig& c);

// Inputs of the positions and the mask of a prompt, fixed at prefill.
//   v1:  the GLM layout (spec §1.6): ctx_len = index of the first <sop> (the prompt length when
//        absent), mask_pos = index of the first [gMASK], else [MASK], else ctx_len − 1.
//   v2+: plain causal positions 0..N−1: both 0.
struct PromptLayout {
  int64_t ctx_len = 0;
  int64_t mask_pos = 0;
};
PromptLayout prompt_layout(const ModelConfig& c, const std::vector<int64_t>& ids);

// Checks one checkpoint tensor against the schema: a known key must have the schema's shape, int8
// dtype for a quantized weight and a floating dtype otherwise; a "<layer_prefix>N." key with N
// outside the config's layers is an error. Unknown keys pass (the loader reads only the schema's).
// `where` names the file, `dtype_name` the stored dtype (for the message).
void check_tensor(const ModelSchema& s, const std::string& where, const std::string& name,
                  const std::vector<int64_t>& shape, bool stored_int8, bool stored_float,
                  const std::string& dtype_name);

namespace detail {
ModelSchema chatglm_schema(const ModelConfig& c);
ModelSchema chatglm2_schema(const ModelConfig& c);
PromptLayout chatglm_prompt_layout(const ModelConfig& c, const std::vector<int64_t>& ids);
std::string shape_string(const std::vector<int64_t>& shape);
}  // namespace detail

}  // namespace glmpipe
