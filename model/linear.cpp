#include "model/linear.h"

#include "model/quant.h"

namespace glmpipe {

int64_t LinearWeight::weight_bytes() const {
  int64_t n = weight.defined() ? weight.nbytes() : 0;
  if (scale.defined()) n += scale.nbytes();
  if (bias.defined()) n += bias.nbytes();
  return n;
}

at::Tensor linear_forward(const at::Tensor& x, const LinearWeight& w) {
  if (w.quantized()) return quantized_linear_forward(x, w);
  // One row in fp32: sgemv streams W at memory bandwidth; sgemm with m=1 does not.
  if (x.size(0) == 1 && x.scalar_type() == at::kFloat && x.device().is_cpu()) {
    auto y = w.bias.defined() ? at::addmv(w.bias, w.weight, x[0]) : at::mv(w.weight, x[0]);
    return y.unsqueeze(0);
  }
  return w.bias.defined() ? at::linear(x, w.weight, w.bias) : at::linear(x, w.weight);
}

}  // namespace glmpipe
