// int8/int4 packing and quantization (reference ATen code: load-time only), and the quantized
// Linear forward, which dispatches to the row kernels of model/qgemv.h for decode-shaped inputs.
#include "model/quant.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

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

namespace {

// Row r of w ([out, in], contiguous, fp32/fp16/bf16) as fp32 into dst.
void row_to_float(const at::Tensor& w, int64_t r, int64_t in, float* dst) {
  switch (w.scalar_type()) {
    case at::kFloat: std::memcpy(dst, w.data_ptr<float>() + r * in, in * sizeof(float)); break;
    case at::kHalf: {
      const at::Half* p = w.data_ptr<at::Half>() + r * in;
      for (int64_t c = 0; c < in; ++c) dst[c] = static_cast<float>(p[c]);
      break;
    }
    default: {
      const at::BFloat16* p = w.data_ptr<at::BFloat16>() + r * in;
      for (int64_t c = 0; c < in; ++c) dst[c] = static_cast<float>(p[c]);
    }
  }
}

}  // namespace

// One pass per row, parallel over rows, no [out, in] temporaries: load-time quantization of a 6B
// model with the ATen expression (quantize_rows_reference) allocated ~5 fresh float copies of every
// matrix (tens of millions of page faults, ~1 min of system time). Bit-identical to the reference
// (quant_test checks): scale = fp16(amax / qmax) (fp32 division, round to nearest even), q =
// round-half-even(w / max(scale, 1e-30)) clamped to ±qmax.
std::pair<at::Tensor, at::Tensor> quantize_rows(const at::Tensor& w, int bits) {
  GLMPIPE_CHECK(w.dim() == 2) << "quantize_rows: need [out, in] (even in for int4), got " << w.sizes();
  auto scale = at::empty({w.size(0)}, at::TensorOptions().dtype(at::kHalf));
  auto q = at::empty({w.size(0), bits == 8 ? w.size(1) : w.size(1) / 2}, at::TensorOptions().dtype(at::kChar));
  quantize_rows_into(w, bits, q, scale);
  return {q, scale};
}

void quantize_rows_into(const at::Tensor& w, int bits, const at::Tensor& q, const at::Tensor& scale) {
  GLMPIPE_CHECK(bits == 4 || bits == 8) << "quantization bits must be 4 or 8, got " << bits;
  GLMPIPE_CHECK(w.dim() == 2 && (bits == 8 || w.size(1) % 2 == 0))
      << "quantize_rows: need [out, in] (even in for int4), got " << w.sizes();
  const at::ScalarType st = w.scalar_type();
  auto wc = (st == at::kFloat || st == at::kHalf || st == at::kBFloat16 ? w : w.to(at::kFloat)).cpu().contiguous();
  const int64_t out = wc.size(0), in = wc.size(1);
  GLMPIPE_CHECK(q.is_contiguous() && q.scalar_type() == at::kChar && q.dim() == 2 && q.size(0) == out &&
                q.size(1) == (bits == 8 ? in : in / 2) && scale.is_contiguous() && scale.scalar_type() == at::kHalf &&
                scale.numel() == out)
      << "quantize_rows_into: outputs " << q.sizes() << " " << q.scalar_type() << ", " << scale.sizes() << " "
      << scale.scalar_type() << " do not fit int" << bits << " of " << wc.sizes();
  const float qmax = bits == 8 ? 127.0f : 7.0f;
  at::Half* sp = scale.data_ptr<at::Half>();
  int8_t* qp = q.data_ptr<int8_t>();
  at::parallel_for(0, out, std::max<int64_t>(1, (256 << 10) / std::max<int64_t>(1, in)), [&](int64_t r0, int64_t r1) {
    std::vector<float> row(in), qf(in);
    for (int64_t r = r0; r < r1; ++r) {
      row_to_float(wc, r, in, row.data());
      float amax = 0.0f;
      for (int64_t c = 0; c < in; ++c) amax = std::max(amax, std::fabs(row[c]));
      const at::Half sh(amax / qmax);
      sp[r] = sh;
      const float sf = std::max(static_cast<float>(sh), 1e-30f);
      constexpr float kRound = 12582912.0f;  // 1.5·2^23: (v + k) − k rounds to nearest even for |v| < 2^22
      for (int64_t c = 0; c < in; ++c) qf[c] = std::min(qmax, std::max(-qmax, (row[c] / sf + kRound) - kRound));
      if (bits == 8) {
        for (int64_t c = 0; c < in; ++c) qp[r * in + c] = static_cast<int8_t>(qf[c]);
      } else {
        auto* dst = reinterpret_cast<uint8_t*>(qp + r * (in / 2));
        for (int64_t j = 0; j < in / 2; ++j)  // high nibble = even column, low nibble = odd column
          dst[j] = static_cast<uint8_t>((static_cast<unsigned>(static_cast<int>(qf[2 * j])) << 4) |
                                        (static_cast<unsigned>(static_cast<int>(qf[2 * j + 1])) & 0xFu));
      }
    }
  });
}

std::pair<at::Tensor, at::Tensor> quantize_rows_reference(const at::Tensor& w, int bits) {
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
  // Prefill: dequantize into a reused buffer, then one GEMM; bf16 through oneDNN (AMX) where fast.
  const at::ScalarType gt = bf16_gemm_fast() ? at::kBFloat16 : xt;
  const int64_t out = w.weight.size(0), in = w.weight.size(1) * (w.bits == 4 ? 2 : 1);
  auto wf = weight_scratch(gt, out * in).narrow(0, 0, out * in).view({out, in});
  dequantize_into(w.weight, w.scale, w.bits, wf);
  auto xg = x.to(gt);
  auto y = w.bias.defined() ? at::linear(xg, wf, w.bias.to(gt)) : at::linear(xg, wf);
  return y.to(xt);
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
