#include "model/norm.h"

namespace glmpipe {

at::Tensor LayerNorm::operator()(const at::Tensor& x, double eps) const {
  if (weight.scalar_type() != x.scalar_type())  // bf16 parameters, fp32 compute (see compute_dtype)
    return at::layer_norm(x, {weight.size(0)}, weight.to(x.scalar_type()), bias.to(x.scalar_type()), eps);
  return at::layer_norm(x, {weight.size(0)}, weight, bias, eps);
}

at::Tensor RMSNorm::operator()(const at::Tensor& x, double eps) const {
  auto xf = x.to(at::kFloat);
  auto variance = xf.pow(2).mean(-1, /*keepdim=*/true);
  auto y = xf * at::rsqrt(variance + eps);
  return (weight.to(at::kFloat) * y).to(x.scalar_type());
}

}  // namespace glmpipe
