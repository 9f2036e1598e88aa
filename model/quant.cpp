// Reference (dequantize-then-matmul) implementation; the fast CPU kernels replace the forward.
#include "model/quant.h"

#include "common/error.h"

namespace glmpipe {

at::Tensor pack_int4(const at::Tensor& q) {
  GLMPIPE_CHECK(q.dim() == 2 && q.size(1) % 2 == 0) << "pack_int4: need [out, even in], got " << q.sizes();
  auto q8 = q.to(at::kChar).contiguous();
  auto even = q8.slice(1, 0, q8.size(1), 2).to(at::kInt);
  auto odd = q8.slice(1, 1, q8.size(1), 2).to(at::kInt);
  return ((even << 4) | (odd & 0xF)).to(at::kByte).view(at::kChar).contiguous();
}

at::Tensor unpack_int4(const at::Tensor& packed) {
  auto p = packed.to(at::kChar).contiguous();
  auto hi = p.__rshift__(4);                                  // arithmetic shift keeps the sign
  auto lo = (p.to(at::kInt) << 28).__rshift__(28).to(at::kChar);
  return at::stack({hi, lo}, 2).reshape({p.size(0), p.size(1) * 2}).contiguous();
}

std::pair<at::Tensor, at::Tensor> quantize_rows(const at::Tensor& w, int bits) {
  GLMPIPE_CHECK(bits == 4 || bits == 8) << "quantization bits must be 4 or 8, got " << bits;
  auto wf = w.to(at::kFloat);
  const double qmax = bits == 8 ? 127.0 : 7.0;
  auto scale = (wf.abs().amax(1) / qmax).to(at::kHalf);
  auto sf = scale.to(at::kFloat).clamp_min(1e-30).unsqueeze(1);
  auto q = (wf / sf).round().clamp(-qmax, qmax).to(at::kChar);
  return {bits == 8 ? q.contiguous() : pack_int4(q), scale};
}

at::Tensor dequantize(const at::Tensor& qweight, const at::Tensor& scale, int bits, at::ScalarType dtype) {
  auto q = bits == 4 ? unpack_int4(qweight) : qweight;
  return (q.to(at::kFloat) * scale.to(at::kFloat).unsqueeze(1)).to(dtype);
}

at::Tensor quantized_linear_forward(const at::Tensor& x, const LinearWeight& w) {
  auto wf = dequantize(w.weight, w.scale, w.bits, x.scalar_type());
  return w.bias.defined() ? at::linear(x, wf, w.bias) : at::linear(x, wf);
}

}  // namespace glmpipe
