// The planner's model of a rank's working set beyond its resident weights and KV cache: the
// activations of one full-length prefill and the kernels' workspace (plan.h gives the formulas).
// The CPU terms are counted from the forward code (model/chatglm*/..._shard.cpp, model/linear.cpp,
// model/quant.cpp, model/attention.cpp) and checked by bench/bench_plan_accuracy.sh (peak RSS) and
// planner_memory_test (peak bytes of the tensors allocated).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "common/checked.h"
#include "planner/plan.h"

namespace glmpipe {

namespace {

// Row counts above which model/linear.cpp and model/quant.cpp leave the row kernels for a GEMM
// (kBf16GemvMaxTokens, quantized_gemv_max_tokens() without AVX-512; the smaller limits of the
// AVX-512 machines only make the GEMM path more likely). A full-length prefill of more rows than
// this takes the GEMM path, and with it the workspace below.
constexpr int64_t kGemmRows = 32;

// Element widths (per token) of one block's Linears, from the family's schema.
struct BlockWidths {
  int64_t qkv = 0;       // query_key_value output
  int64_t up = 0;        // dense_h_to_4h output (v2+: gate and up, 2·ffn)
  int64_t down_in = 0;   // dense_4h_to_h input
  int64_t max_linear = 0;  // largest out·in of the block's Linears (the GEMM workspace)
  int64_t max_in = 0;      // largest `in` of the block's Linears (oneDNN's B panel below)
};

// oneDNN's scratchpad for one bf16 GEMM y[M, N] = x[M, K]·W[N, K]ᵀ (libtorch 2.11, oneDNN 3.x
// brgemm matmul on AMX), allocated through libtorch's CPU allocator for the duration of the call,
// one set of buffers per intra-op thread. Not derived from oneDNN's code: an upper bound fitted to
// what it allocated for M 33–4096, K 256–16384, N 256–16384 (1 and 2 threads): per thread at most
// the AMX tile workspace and palette (5 KiB), a copy of one 64-column panel of W (64·K bf16 =
// 128·K bytes; exact for K <= 1024, oneDNN caps the panel for larger K) and fp32 accumulators of
// up to 2048 rows × 128 columns (512·M bytes; seen only for M >= 128, at most 842 KiB in all).
// E.g. M 96, K 1024, N 256: 136192 bytes a thread measured, 185344 counted here.
int64_t onednn_scratch_per_thread(int64_t rows, int64_t max_in) {
  return (CheckedI64(5 * 1024) + CheckedI64(128) * max_in + CheckedI64(512) * std::min<int64_t>(rows, 2048)).saturated();
}

BlockWidths block_widths(const ModelConfig& cfg) {
  ModelConfig float_cfg = cfg;  // float shapes: int4 storage halves `in`
  float_cfg.quantization_bit = 0;
  float_cfg.num_layers = 1;  // block 0 is all it reads (the planner asks for every stage shape)
  const ModelSchema schema = model_schema(float_cfg);
  BlockWidths w;
  auto ends_with = [](const std::string& s, const char* tail) {
    const size_t n = std::strlen(tail);
    return s.size() >= n && s.compare(s.size() - n, n, tail) == 0;
  };
  for (const ParamSpec& p : schema.params) {
    if (p.kind != ParamKind::kLinear || p.unit != 1 || p.shape.size() != 2) continue;  // block 0
    w.max_linear = std::max(w.max_linear, (CheckedI64(p.shape[0]) * p.shape[1]).saturated());
    w.max_in = std::max(w.max_in, p.shape[1]);
    if (ends_with(p.name, "query_key_value")) w.qkv = p.shape[0];
    if (ends_with(p.name, "dense_h_to_4h")) w.up = p.shape[0];
    if (ends_with(p.name, "dense_4h_to_h")) w.down_in = p.shape[1];
  }
  return w;
}

}  // namespace

bool cpu_gemm_is_bf16() {
  // Mirrors bf16_gemm_fast() of model/linear.cpp (planner_memory_test checks that they agree).
  const char* e = std::getenv("GLMPIPE_BF16_GEMM");
  if (e && std::strcmp(e, "0") == 0) return false;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
}

int cpu_rank_threads(const RankSpec& rank) {
  // The runtime gives a rank with threads 0 this host's cores shared among its ranks
  // (launcher/session.cpp): all the planning host's cores bound that share.
  static const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  return rank.threads > 0 ? rank.threads : cores;
}

int64_t cpu_activation_bytes(const ModelMetadata& meta, const Deployment& dep, bool has_embedding, bool has_blocks,
                             bool has_head, int threads) {
  const ModelConfig& c = meta.config;
  // Query rows of one sequence in one prefill step: the whole prompt, or for the causal families
  // (v2+) a chunk of kv_cache.prefill_chunk tokens (stage/scheduler.h); T = rows of the step.
  const int64_t chunk = dep.kv_cache.prefill_chunk;
  const bool chunked = c.family == Family::kChatGLM2 && chunk > 0 && chunk < dep.kv_cache.max_seq_len;
  const CheckedI64 B = dep.kv_cache.max_batch, S = dep.kv_cache.max_seq_len, Sq = chunked ? chunk : S.value(),
                   T = B * Sq;
  const int64_t a = 4, e = dtype_bytes(meta.dtype), H = c.hidden_size, kv = c.kv_heads() * c.head_dim();
  const bool quantized = !meta.quantization.empty(), float32 = meta.dtype == "float32";
  const bool bf16_gemm = cpu_gemm_is_bf16() && (quantized || !float32);  // x and y pass through bf16
  // The stage's input, held by the stage loop while the blocks run: the embedding's rows (at e
  // bytes, converted to fp32 by the first block) or the hidden states received.
  CheckedI64 bytes = T * H * (has_embedding ? e : a);
  if (has_embedding) bytes += T * H * a;  // the converted rows (block 0's x) / the rows sent on
  if (has_blocks) {
    const BlockWidths w = block_widths(c);
    // MLP phase (the peak for short sequences), at the down projection: x, h, qkv, ctx, the
    // attention output, x2, h2 (6H + Q, counting x here and the stage input above), the up
    // projection and its activation, the down projection's output (+ H); with a bf16 GEMM the
    // input of the down projection and its output also exist in bf16. v2+ (SwiGLU) peaks earlier,
    // at silu(gate) * up: the silu temporary and the product beside the up projection (5H + Q + U + 2F).
    CheckedI64 mlp = T * a * (7 * H + w.qkv + w.up + w.down_in);
    if (bf16_gemm) mlp += T * 2 * (w.down_in + H);
    if (c.family == Family::kChatGLM2) {
      const CheckedI64 glu = T * a * (5 * H + w.qkv + w.up + 2 * w.down_in);
      if (glu.saturated() > mlp.saturated()) mlp = glu;
    }
    // Attention phase (the peak for long sequences): x, h, qkv, the rotated q and k, a contiguous
    // copy of q for the batched matmul, fp32 copies of the cached keys and values when the cache is
    // 16-bit, and two [heads, Sq, S] fp32 score tensors of one sequence (the scaled scores and the
    // softmax, or the matmul result and the scaled copy).
    CheckedI64 attn = T * a * (3 * H + w.qkv + kv + H) + CheckedI64(2) * c.num_attention_heads * Sq * S * 4;
    if (!float32) attn += S * a * 2 * kv;  // one sequence's keys and values at a time
    bytes += (mlp.saturated() > attn.saturated() ? mlp : attn);
    // GEMM workspace (thread-local, kept after the first prefill): quantized weights are
    // dequantized into a buffer of the largest Linear (bf16 with a bf16 GEMM, else fp32); bf16
    // weights without a bf16 GEMM are widened to fp32 into one. fp32 and bf16-GEMM weights need none.
    if (T.saturated() > kGemmRows) {
      if (quantized) bytes += CheckedI64(w.max_linear) * (bf16_gemm ? 2 : 4);
      else if (!float32 && !bf16_gemm) bytes += CheckedI64(w.max_linear) * 4;
      // bf16 GEMMs (bf16 or dequantized weights on a bf16 CPU) go to oneDNN, whose scratchpad is
      // alive at the MLP peak (the down projection) and in every other Linear.
      if (bf16_gemm) bytes += CheckedI64(onednn_scratch_per_thread(T.saturated(), w.max_in)) * std::max(0, threads);
    }
  }
  if (has_head) bytes += B * c.vocab_size * 4;  // fp32 logits of the last positions
  return bytes.saturated();
}

}  // namespace glmpipe
