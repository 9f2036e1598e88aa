#include "model/rotary.h"

namespace glmpipe {

at::Tensor rope_inv_freq(int64_t dim, double base) {
  return at::pow(base, at::arange(0, dim, 2, at::kFloat) / static_cast<double>(dim)).reciprocal();
}

at::Tensor rope_half_split(const at::Tensor& u, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t h = u.size(-1) / 2;
  auto rotated = at::cat({-u.narrow(-1, h, h), u.narrow(-1, 0, h)}, -1);
  return u * cos + rotated * sin;
}

at::Tensor rope_adjacent_pairs(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t S = x.size(0), n = x.size(1), d = x.size(2), p = cos.size(-1);
  auto xf = x.to(at::kFloat);
  auto pairs = xf.narrow(-1, 0, 2 * p).reshape({S, n, p, 2});
  auto x0 = pairs.select(-1, 0), x1 = pairs.select(-1, 1);  // [S, n, p]
  auto rotated = at::stack({x0 * cos - x1 * sin, x1 * cos + x0 * sin}, -1).flatten(2);  // [S, n, 2p]
  auto out = 2 * p == d ? rotated : at::cat({rotated, xf.narrow(-1, 2 * p, d - 2 * p)}, -1);
  return out.to(x.scalar_type());
}

}  // namespace glmpipe
