// Random-weight checkpoints of any family with the exact HF names and layout of its tensor schema
// (model/family.h) and the config.json its official configuration class writes, for tests and
// benchmarks. Deterministic for a seed (explicit CPU generator, fixed generation order).
//
//   TinyModelOptions o;  o.layers = 4;  o.dtype = at::kHalf;  o.format = CheckpointFormat::kBin;
//   o.family = TinyFamily::kGLM4;                         // or kChatGLM (v1, default), kChatGLM2
//   ModelConfig cfg = make_tiny_model("/tmp/tiny", o);   // config.json + weights (+ index)
//
// ChatGLM-6B (v1, spec §1.3): embeddings N(0,1), Linear weights N(0, 1/sqrt(in)) (×8 for
// attention.dense and mlp.dense_4h_to_h, see tiny_model.cpp), biases N(0, 0.02), LayerNorm weight
// 1 + N(0, 0.1), bias N(0, 0.1). As in the real fp16 checkpoint, LayerNorm tensors are stored fp32
// when dtype is fp16; everything else is stored in dtype. Each layer also carries
// `attention.rotary_emb.inv_freq` [head_dim/4] (the reader ignores it). `lm_head.weight` is a copy
// of `transformer.word_embeddings.weight` (tied) unless write_lm_head is false.
// Special ids: ChatGLM-6B's own (mask 130000, gmask 130001, bos <sop> 130004, eos <eop> 130005,
// pad 3) when the vocabulary holds them (> 130005); else inside it: mask = V-5, gmask = V-4,
// bos = V-3, eos = V-2, pad = 0. config.json carries auto_map like the official one.
// ChatGLM2/3 and GLM-4 (chatglm2-family.md §1.4): the same value rules without the ×8 gain (a
// pre-norm residual needs none), RMSNorm weights 1 + N(0, 0.1) stored in dtype (as the real
// checkpoints), QKV bias only; an untied `transformer.output_layer.weight` N(0, 1/sqrt(hidden));
// `transformer.rotary_pos_emb.inv_freq` [kv_channels/4] without rope_ratio (ignored by the reader).
// kChatGLM2: eps 1e-5, eos 2, pad 0, rope_ratio 1 (ChatGLM2/3-6B); kGLM4: eps 1.5625e-7,
// rope_ratio 500, eos [V-14, V-7, V-5] (GLM-4's <|endoftext|>, <|user|>, <|observation|> offsets
// from the first of its 14 special ids), pad V-14.
// quantization_bit 4/8 (spec §3): the four block Linears are stored as int8 `weight` ([out, in], or
// [out, in/2] with the high nibble = even column) + fp16 `weight_scale` [out], quantized per row,
// symmetric, from the random float weights: scale = max|w| / 127 (or / 7), q = round(w / scale).
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "checkpoint/checkpoint.h"

namespace glmpipe {

// Which official configuration make_tiny_model imitates (GLM-4 is the ChatGLM2 architecture with
// GLM-4's config values).
enum class TinyFamily { kChatGLM, kChatGLM2, kGLM4 };
// "chatglm" | "chatglm2" | "glm4" (Error otherwise)
TinyFamily parse_tiny_family(const std::string& s);

struct TinyModelOptions {
  int64_t layers = 2;
  int64_t hidden = 64;
  int64_t heads = 4;
  int64_t inner = 0;  // 0 -> 4 * hidden (v2+: ffn_hidden_size)
  int64_t vocab = 256;
  uint64_t seed = 0;
  at::ScalarType dtype = at::kFloat;  // kFloat, kHalf or kBFloat16
  CheckpointFormat format = CheckpointFormat::kSafetensors;
  int shards = 1;
  int quantization_bit = 0;  // 0, 4 or 8
  bool write_lm_head = true;  // v1 only (v2+ always writes its untied output_layer)
  // v1: false writes config tie_word_embeddings false and a random lm_head.weight of its own.
  bool tie_word_embeddings = true;
  // v1 tied: store a random lm_head.weight instead of the embedding's copy (the tying rule ignores
  // it: tests of the rule).
  bool distinct_lm_head = false;
  TinyFamily family = TinyFamily::kChatGLM;
  int64_t kv_groups = 2;      // v2+: multi_query_group_num
  int64_t kv_channels = 0;    // v2+: head size (0 -> hidden / heads)
  double rope_ratio = 0;      // v2+: 0 -> the family's value (ChatGLM2 1, GLM-4 500)
  std::string name_or_path;   // v2+: config "_name_or_path" (e.g. THUDM/chatglm2-6b-32k)
};

// The config the options describe (Error naming the option when they are inconsistent).
ModelConfig tiny_model_config(const TinyModelOptions& opts);
// The tensors make_tiny_model writes, in file order (no I/O).
std::vector<std::pair<std::string, at::Tensor>> make_tiny_tensors(const TinyModelOptions& opts);
// Writes config.json + weights into `dir` (created if needed); returns the config.
ModelConfig make_tiny_model(const std::string& dir, const TinyModelOptions& opts);

// Per-row symmetric quantization (spec §3.3/3.4): returns {int8 weight ([out,in] or [out,in/2]
// packed), fp16 scale [out]} for a float weight [out, in].
std::pair<at::Tensor, at::Tensor> quantize_weight_rows(const at::Tensor& w, int bits);

}  // namespace glmpipe
