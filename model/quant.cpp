// int8/int4 packing and quantization (reference ATen code: load-time only), and the quantized
// Linear forward, which dispatches to the row kernels of model/qgemv.h for decode-shaped inputs.
#include "model/quant.h"

#include "common/error.h"
#include "model/linear.h"
#include "model/qgemv.h"

namespace glmpipe {

at::Tensor pack_int4(const at::Tensor& q) {
  GLMPIPE_CHECK(q.dim() == 2 && q.size(1) % 2 == 0) << "pack_int4: need [out, even in], got " << q.sizes();
  auto q8 = q.to(at::kChar).contiguous();
  GLMPIPE_CHECK(q8.numel() == 0 || (q8.min().item<int>() >= -8 && q8.max().item<int>() <= 7))
      << "pack_int4: values must lie in -8..7";
  auto out = at::empty({q8.size(0), q8.size(1) / 2}, q8.options());
  const int8_t* src = q8.data_ptr<int8_t>();
  auto* dst = reinterpret_cast<uint8_t*>(out.data_ptr<int8_t>());
  for (int64_t i = 0; i < out.numel(); ++i)  // high nibble = even column, low nibble = odd column
    dst[i] = static_cast<uint8_t>((static_cast<unsigned>(src[2 * i]) << 4) | (static_cast<unsigned>(src[2 * i + 1]) & 0xFu));
  return out;
}

at::Tensor unpack_int4(const at::Tensor& packed) {
  GLMPIPE_CHECK(packed.dim() == 2) << "unpack_int4: need [out, in/2], got " << packed.sizes();
  auto p = packed.to(at::kChar).contiguous();
  auto out = at::empty({p.size(0), p.size(1) * 2}, p.options());
  const int8_t* src = p.data_ptr<int8_t>();
  int8_t* dst = out.data_ptr<int8_t>();
  for (int64_t i = 0; i < p.numel(); ++i) {
    dst[2 * i] = static_cast<int8_t>(src[i] >> 4);  // arithmetic shift keeps the sign
    dst[2 * i + 1] = static_cast<int8_t>(static_cast<int8_t>(static_cast<uint8_t>(src[i]) << 4) >> 4);
  }
  return out;
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

at::Tensor quantized_linear_reference(const at::Tensor& x, const LinearWeight& w) {
  auto wf = dequantize(w.weight, w.scale, w.bits, x.scalar_type());
  return w.bias.defined() ? at::linear(x, wf, w.bias.to(x.scalar_type())) : at::linear(x, wf);
}


at::Tensor quantized_linear_forward(const at::Tensor& x, const LinearWeight& w) {
  GLMPIPE_CHECK(w.bits == 4 || w.bits == 8) << "quantized linear: bits must be 4 or 8, got " << w.bits;
  const auto xt = x.scalar_type();
  const bool cpu_ok = x.device().is_cpu() && w.weight.device().is_cpu() && x.dim() == 2 &&
                      (xt == at::kFloat || xt == at::kBFloat16);
  if (!cpu_ok) return quantized_linear_reference(x, w);
  if (x.size(0) <= quantized_gemv_max_tokens()) {
    return gemv_forward(x, w.weight, w.bits == 4 ? WeightFormat::kInt4 : WeightFormat::kInt8, w.scale, w.bias);
  }
  const int64_t out = w.weight.size(0), in = w.weight.size(1) * (w.bits == 4 ? 2 : 1);
  auto wf = weight_scratch(xt, out * in).narrow(0, 0, out * in).view({out, in});
  dequantize_into(w.weight, w.scale, w.bits, wf);
  return w.bias.defined() ? at::linear(x, wf, w.bias.to(xt)) : at::linear(x, wf);
}

LinearWeight make_quantized_linear(const at::Tensor& weight, const at::Tensor& bias, int bits) {
  GLMPIPE_CHECK(weight.dim() == 2) << "make_quantized_linear: weight must be [out, in], got " << weight.sizes();
  auto [q, scale] = quantize_rows(weight, bits);
  LinearWeight lw;
  lw.weight = q;
  lw.scale = scale.to(at::kFloat);
  if (bias.defined()) lw.bias = bias.to(at::kFloat).contiguous();
  lw.bits = bits;
  lw.out_features = weight.size(0);
  lw.in_features = weight.size(1);
  return lw;
}

}  // namespace glmpipe
