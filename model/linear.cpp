#include "model/linear.h"

#include <cstdlib>
#include <cstring>

#include "model/qgemv.h"
#include "model/quant.h"

namespace glmpipe {

namespace {
// Token rows up to which the bf16 row kernel is used; above it the weight is widened to fp32 into a
// reused buffer and OpenBLAS sgemm does the GEMM. Never oneDNN's bf16 `linear` on CPUs without
// AVX512-BF16: on the AVX2 VM it ran at ~1.3 GB/s, ~100 ms per token for a 16384×4096 matrix
// (bench_linear), while the row kernel costs ~2 ms per token in tiles of 4 and widen+sgemm less
// than 1 ms per token for prompts of 64+ tokens (crossover measured like the fp32 one below).
constexpr int64_t kBf16GemvMaxTokens = 32;
// Same for fp32 weights: OpenBLAS sgemm packs W on every call (16384×4096, one thread: 66 ms at
// m = 8, 79 at 16, 110 at 32) while the row kernel reads it once (29 / 47 / 88 ms); sgemm wins
// from ~48 rows. Micro-batches of a pipeline under load are exactly these sizes.
constexpr int64_t kF32GemvMaxTokens = 32;
}  // namespace

bool bf16_gemm_fast() {
  static const bool fast = [] {
    const char* e = std::getenv("GLMPIPE_BF16_GEMM");
    if (e && std::strcmp(e, "0") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
  }();
  return fast;
}

at::Tensor& weight_scratch(at::ScalarType dtype, int64_t numel) {
  thread_local at::Tensor buf_f32, buf_bf16;
  at::Tensor& buf = dtype == at::kBFloat16 ? buf_bf16 : buf_f32;
  if (!buf.defined() || buf.numel() < numel) buf = at::empty({numel}, at::TensorOptions().dtype(dtype));
  return buf;
}

int64_t LinearWeight::weight_bytes() const {
  int64_t n = weight.defined() ? weight.nbytes() : 0;
  if (scale.defined()) n += scale.nbytes();
  if (bias.defined()) n += bias.nbytes();
  return n;
}

at::Tensor linear_forward(const at::Tensor& x, const LinearWeight& w) {
  if (w.quantized()) return quantized_linear_forward(x, w);
  const auto xt = x.scalar_type(), wt = w.weight.scalar_type();
  const bool cpu = x.device().is_cpu() && w.weight.device().is_cpu() && x.dim() == 2;
  // bf16 weight, few rows: bf16 row kernel (widen to fp32 + FMA), fp32 or bf16 activations.
  const int64_t bf16_rows = bf16_gemm_fast() ? kGemvMaxTokens : kBf16GemvMaxTokens;
  if (cpu && wt == at::kBFloat16 && (xt == at::kFloat || xt == at::kBFloat16) && x.size(0) <= bf16_rows)
    return gemv_forward(x, w.weight, WeightFormat::kBF16, at::Tensor(), w.bias);
  if (cpu && wt == at::kBFloat16 && bf16_gemm_fast()) {  // prefill: oneDNN bf16 GEMM (AMX tiles)
    auto y = w.bias.defined() ? at::linear(x.to(at::kBFloat16), w.weight, w.bias.to(at::kBFloat16))
                              : at::linear(x.to(at::kBFloat16), w.weight);
    return y.to(xt);
  }
  // One row in fp32: sgemv streams W at memory bandwidth; sgemm with m=1 does not.
  if (x.size(0) == 1 && xt == at::kFloat && wt == at::kFloat && x.device().is_cpu()) {
    auto y = w.bias.defined() ? at::addmv(w.bias, w.weight, x[0]) : at::mv(w.weight, x[0]);
    return y.unsqueeze(0);
  }
  // A few rows in fp32 (decode of a small batch / micro-batch): the row kernel reads each weight
  // block once for all rows; sgemm with m = 2..32 costs more (see kF32GemvMaxTokens).
  if (cpu && xt == at::kFloat && wt == at::kFloat && x.size(0) <= kF32GemvMaxTokens)
    return gemv_forward(x, w.weight, WeightFormat::kF32, at::Tensor(), w.bias);
  if (cpu && wt == at::kBFloat16) {  // many rows (prefill): widen W once, fp32 GEMM
    const int64_t out = w.weight.size(0), in = w.weight.size(1);
    auto wf = weight_scratch(at::kFloat, out * in).narrow(0, 0, out * in).view({out, in});
    wf.copy_(w.weight);
    auto xf = x.to(at::kFloat);
    auto y = w.bias.defined() ? at::linear(xf, wf, w.bias.to(at::kFloat)) : at::linear(xf, wf);
    return y.to(xt);
  }
  if (cpu && xt != wt) {  // e.g. fp32 weight with bf16 activations: compute in the weight dtype
    auto xw = x.to(wt);
    auto y = w.bias.defined() ? at::linear(xw, w.weight, w.bias.to(wt)) : at::linear(xw, w.weight);
    return y.to(xt);
  }
  return w.bias.defined() ? at::linear(x, w.weight, w.bias) : at::linear(x, w.weight);
}

}  // namespace glmpipe
