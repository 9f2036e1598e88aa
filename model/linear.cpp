#include "model/linear.h"

#include "model/qgemv.h"
#include "model/quant.h"

namespace glmpipe {

namespace {
// Token rows up to which the hand-written row kernels beat libtorch for float weights (bench_linear,
// 2-core Zen 4): bf16 `linear` with few rows goes through oneDNN at ~17 GB/s per thread.
constexpr int64_t kBf16GemvMaxTokens = 4;
}  // namespace

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
  if (cpu && wt == at::kBFloat16 && (xt == at::kFloat || xt == at::kBFloat16) && x.size(0) <= kBf16GemvMaxTokens)
    return gemv_forward(x, w.weight, WeightFormat::kBF16, at::Tensor(), w.bias);
  // One row in fp32: sgemv streams W at memory bandwidth; sgemm with m=1 does not.
  if (x.size(0) == 1 && xt == at::kFloat && wt == at::kFloat && x.device().is_cpu()) {
    auto y = w.bias.defined() ? at::addmv(w.bias, w.weight, x[0]) : at::mv(w.weight, x[0]);
    return y.unsqueeze(0);
  }
  // A few rows in fp32 (decode of a small batch / micro-batch): the row kernel reads each weight
  // block once for all rows; sgemm with m = 2..8 runs at sgemv-per-row speed or worse.
  if (cpu && xt == at::kFloat && wt == at::kFloat && x.size(0) <= kGemvMaxTokens)
    return gemv_forward(x, w.weight, WeightFormat::kF32, at::Tensor(), w.bias);
  if (cpu && xt != wt) {  // e.g. bf16 weight with fp32 activations: compute in the weight dtype
    auto xw = x.to(wt);
    auto y = w.bias.defined() ? at::linear(xw, w.weight, w.bias.to(wt)) : at::linear(xw, w.weight);
    return y.to(xt);
  }
  return w.bias.defined() ? at::linear(x, w.weight, w.bias) : at::linear(x, w.weight);
}

}  // namespace glmpipe
