// ModelMetadata: what the planner needs to know about a checkpoint of any family — the config and
// the resident bytes of each placement unit, in pipeline order, named as the family names its
// modules (model/family.h):
//   v1:  transformer.word_embeddings, transformer.layers.0 .. {L-1}, transformer.final_layernorm, lm_head
//   v2+: transformer.embedding, transformer.encoder.layers.0 .. {L-1},
//        transformer.encoder.final_layernorm, transformer.output_layer
// Bytes are what the runtime keeps in memory, not what is on disk:
//   * float tensors are converted to the compute dtype (the real v1 checkpoint stores LayerNorms in
//     fp32 and everything else in fp16; at dtype float16 the LayerNorms count 2 bytes/element);
//   * with int8/int4, the four Linear weights of each block count 1 byte / half a byte per weight
//     plus one scale per output row (chatglm-spec §3: fp16 values; the runtime keeps them in fp32,
//     4 bytes, also for a quantized checkpoint's stored fp16 .weight_scale); biases and norms stay float;
//   * the rotary inv_freq buffers are recomputed by the model, so they count 0.
// v1's lm_head is tied to the embedding. When the checkpoint has no `lm_head.weight` (int4
// checkpoints), the stage holding the head still needs the embedding matrix: the lm_head unit then
// counts the embedding's bytes, and `lm_head_tied` tells the planner to count it once when the
// embedding and the head share a stage. ChatGLM2/3 and GLM-4 have an untied output_layer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/family.h"
#include "model/model_config.h"

namespace glmpipe {

class Checkpoint;

struct UnitInfo {
  std::string name;          // the family's module name, e.g. "transformer.layers.N"
  int64_t weight_bytes = 0;  // resident bytes, see above
};

struct ModelMetadata {
  ModelConfig config;
  std::string dtype = "float16";  // compute dtype the bytes were computed for
  std::string quantization;       // "" | "int8" | "int4"
  std::vector<UnitInfo> units;    // num_layers + 3 entries, pipeline order
  bool lm_head_tied = false;      // lm_head unit = the embedding matrix (count once if co-located)
  std::string source;             // "checkpoint DIR" | "synthesized from config"

  int num_layers() const { return static_cast<int>(config.num_layers); }
  const UnitInfo& embedding() const { return units.front(); }
  const UnitInfo& layer(int i) const { return units.at(1 + static_cast<size_t>(i)); }
  const UnitInfo& final_layernorm() const { return units.at(units.size() - 2); }
  const UnitInfo& lm_head() const { return units.back(); }
  int64_t total_weight_bytes() const;  // every unit once (a tied head counted once)
  // KV-cache bytes of one token in one block (K + V, the family's KV groups) at this dtype.
  int64_t kv_bytes_per_token_layer() const;
};

// Bytes per element of a compute dtype: float32 4, float16/bfloat16 2. Error otherwise.
int64_t dtype_bytes(const std::string& dtype);

// From the tensor list of an opened checkpoint (metadata only, no tensor bytes read). A quantized
// checkpoint (config quantization_bit 4/8) is counted at its stored bytes; `quantization` must then
// be empty or match. A float checkpoint with `quantization` counts the quantize-on-load bytes.
ModelMetadata metadata_from_checkpoint(const Checkpoint& ckpt, const std::string& dtype,
                                       const std::string& quantization);

// From the config alone, with the family's schema shapes. Mirrors the published files: the v1 float
// checkpoint stores lm_head.weight; the quantized ones do not (lm_head tied).
ModelMetadata synthesize_metadata(const ModelConfig& cfg, const std::string& dtype,
                                  const std::string& quantization);

// For `plan`: DIR with weights -> metadata_from_checkpoint (metadata only); DIR with only
// config.json -> synthesize_metadata; a missing DIR or one without config.json -> Error naming it.
ModelMetadata load_model_metadata(const std::string& dir, const std::string& dtype,
                                  const std::string& quantization);

namespace detail {
// Resident bytes of one tensor of `schema` (rules above). `stored_integer`: its on-disk dtype is
// int8/uint8, i.e. it is already quantized, and counts `stored_bytes`.
int64_t resident_bytes(const TensorSpec* spec, const ModelSchema& schema, const std::vector<int64_t>& shape,
                       bool stored_integer, int64_t stored_bytes, const std::string& dtype,
                       const std::string& quantization);
}  // namespace detail

}  // namespace glmpipe
