// Row kernels (int8, int4, bf16, fp32 weights) and linear_forward against dequantize-then-linear in
// double. Tolerances (per output element, A = Σ_c |W[r,c]·x[t,c]|, the absolute dot product):
//   fp32 accumulate, fp32 output: |y − ref| ≤ 1e-4·A + 1e-6
//   bf16 output of an fp32 accumulate: additionally 2^-8·|ref| (one bf16 rounding)
//   bf16 GEMM paths (T above the kernel limit with bf16 x, or on CPUs where bf16_gemm_fast() sends
//   prefill through oneDNN bf16, or bf16 weight with fp32 x): 1e-2·A
//   one-token int8/int4 calls on AVX-512 (x rounded to int8 per 32-column block, scale
//   s_b = max|x_b| / 127): additionally Σ_c |W[r,c]|·s_b(c)/2, the most that rounding can move y;
//   and against the reference on the rounded x itself, 1e-4·A again (OneTokenInt8Activations).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "model/linear.h"
#include "model/qgemv.h"
#include "model/quant.h"

namespace glmpipe {
namespace {

struct Shape {
  int64_t out, in;
};
// {40, 544} and {19, 4096}: multiples of 32 columns, so one-token int8/int4 calls on AVX2 take the
// int16-activation kernel (544 = two 256-column blocks and a partial one).
// 544 also gives int4 rows of 272 bytes (a 16-byte tail after 32-byte steps in the AVX-512 int16
// kernel); 4160 = 16.25 blocks. Row counts are not multiples of the 8-row blocks.
// {19, 4096}, {33, 640} and {9, 128} (and {16, 64} for int8): whole 128-column (int8: 64) steps, so
// one-token int8/int4 calls on AVX-512 take the int8-activation (VNNI) kernel; the others there fall
// back to the int16 one.
const Shape kShapes[] = {{37, 100}, {70, 258}, {5, 30}, {129, 1030}, {16, 64}, {300, 2}, {40, 544}, {19, 4096}, {13, 4160},
                         {33, 640}, {9, 128}};
// Odd column counts (float weights only: int4 needs an even count): the AVX-512 bf16 kernel's
// even/odd split does not apply and the plain widening kernel runs.
const Shape kOddShapes[] = {{11, 77}, {9, 33}};
const int64_t kTokens[] = {1, 2, 3, 8, 17};

// Checks y against ref (both [T, out]); abs_dot is A above.
void expect_close(const at::Tensor& y, const at::Tensor& ref, const at::Tensor& abs_dot, double rel_a, double rel_y,
                  const std::string& what) {
  ASSERT_EQ(y.sizes(), ref.sizes()) << what;
  auto err = (y.to(at::kDouble) - ref).abs();
  auto tol = abs_dot * rel_a + ref.abs() * rel_y + 1e-6;
  auto bad = (err > tol);
  EXPECT_FALSE(bad.any().item<bool>()) << what << ": max err " << err.max().item<double>() << ", max (err - tol) "
                                       << (err - tol).max().item<double>();
}

// True when a call takes the int8-activation kernel (see qgemv.h GemvArgs::x8).
bool int8_activations(int64_t T, int64_t in, int bits) {
  const KernelIsa k = gemv_isa_for(WeightFormat::kInt8);
  if (T != 1) return false;
  if (bits == 4) return in % 128 == 0 && (k == KernelIsa::kAvx512 || k == KernelIsa::kAvx2);
  return in % 64 == 0 && k == KernelIsa::kAvx512;
}

// x [1, in] rounded as the int8-activation kernels round it: per block of 32 columns, scale
// s = max|x_b| / 127, x8 = round-half-even(x / s); returns s·x8 (double) and the per-column s/2.
std::pair<at::Tensor, at::Tensor> round_x_int8(const at::Tensor& x) {
  auto xd = x.to(at::kFloat).to(at::kDouble).reshape({-1, 32});
  auto s = xd.abs().amax(1, true) / 127.0;
  s = at::where(s > 0, s, at::ones_like(s));
  auto q = at::round(xd / s).clamp(-127, 127);  // at::round rounds half to even, as vcvtps2dq
  return {(q * s).reshape(x.sizes()), (s / 2).expand_as(xd).reshape(x.sizes())};
}

// Reference in double from the dequantized fp32 weight.
std::pair<at::Tensor, at::Tensor> reference(const at::Tensor& x, const at::Tensor& wf, const at::Tensor& bias) {
  auto xd = x.to(at::kDouble), wd = wf.to(at::kDouble);
  auto ref = bias.defined() ? at::linear(xd, wd, bias.to(at::kDouble)) : at::linear(xd, wd);
  return {ref, at::linear(xd.abs(), wd.abs())};
}

// Every kernel family is tested on its own (forced); a family this CPU cannot run is reported as
// skipped, never passed.
class Kernels : public ::testing::TestWithParam<KernelIsa> {
 protected:
  void SetUp() override {
    if (!kernel_isa_supported(GetParam())) GTEST_SKIP() << kernel_isa_name(GetParam()) << " kernels: this CPU cannot run them";
    force_kernel_isa(GetParam());
  }
  void TearDown() override { force_kernel_isa(std::nullopt); }
};

TEST_P(Kernels, QuantizedMatchesReference) {
  at::manual_seed(10);
  for (int bits : {8, 4}) {
    for (const Shape& s : kShapes) {
      auto lw = make_quantized_linear(at::randn({s.out, s.in}), at::randn({s.out}), bits);
      auto wf = dequantize(lw.weight, lw.scale, bits, at::kFloat);
      for (int64_t T : kTokens) {
        for (auto xt : {at::kFloat, at::kBFloat16}) {
          auto x = at::randn({T, s.in}).to(xt);
          auto [ref, absd] = reference(x, wf, lw.bias);
          const std::string what = "bits " + std::to_string(bits) + " out " + std::to_string(s.out) + " in " +
                                   std::to_string(s.in) + " T " + std::to_string(T) + (xt == at::kFloat ? " fp32" : " bf16");
          auto y = linear_forward(x, lw);
          EXPECT_EQ(y.scalar_type(), xt) << what;
          const bool gemm_bf16 = (xt == at::kBFloat16 || bf16_gemm_fast()) && T > quantized_gemv_max_tokens();
          // int8 activations: A·1e-4 plus what rounding x can move y (see the header)
          const bool x8 = int8_activations(T, s.in, bits);
          if (x8) absd = absd + at::linear(round_x_int8(x).second, wf.to(at::kDouble).abs()) * 1e4;
          expect_close(y, ref, absd, gemm_bf16 ? 1e-2 : 1e-4,
                       gemm_bf16 ? 1.0 / 128 : xt == at::kBFloat16 ? 1.0 / 256 : 0.0, what);
          if (T <= kGemvMaxTokens) {  // the kernel itself, with fp16 scale and no bias
            LinearWeight h = lw;
            h.scale = lw.scale.to(at::kHalf);
            h.bias = at::Tensor();
            const at::Tensor wh = dequantize(h.weight, h.scale, bits, at::kFloat);
            auto [ref2, absd2] = reference(x, wh, at::Tensor());
            if (x8) absd2 = absd2 + at::linear(round_x_int8(x).second, wh.to(at::kDouble).abs()) * 1e4;
            expect_close(quantized_linear_forward(x, h), ref2, absd2, 1e-4, xt == at::kBFloat16 ? 1.0 / 256 : 0.0,
                         what + " fp16 scale");
          }
        }
      }
    }
  }
}

TEST_P(Kernels, FloatWeightsMatchReference) {
  at::manual_seed(11);
  std::vector<Shape> shapes(std::begin(kShapes), std::end(kShapes));
  shapes.insert(shapes.end(), std::begin(kOddShapes), std::end(kOddShapes));
  for (auto wt : {at::kBFloat16, at::kFloat}) {
    for (const Shape& s : shapes) {
      LinearWeight lw;
      lw.weight = at::randn({s.out, s.in}).to(wt);
      lw.bias = at::randn({s.out}).to(wt);
      lw.in_features = s.in;
      lw.out_features = s.out;
      for (int64_t T : kTokens) {
        for (auto xt : {at::kFloat, at::kBFloat16}) {
          if (wt == at::kFloat && xt == at::kBFloat16) continue;  // not a supported combination
          auto x = at::randn({T, s.in}).to(xt);
          auto [ref, absd] = reference(x, lw.weight.to(at::kFloat), lw.bias);
          const std::string what = std::string(wt == at::kFloat ? "fp32" : "bf16") + " weight, out " +
                                   std::to_string(s.out) + " in " + std::to_string(s.in) + " T " + std::to_string(T) +
                                   (xt == at::kFloat ? " fp32 x" : " bf16 x");
          auto y = linear_forward(x, lw);
          EXPECT_EQ(y.scalar_type(), xt) << what;
          const bool bf16_gemm = wt == at::kBFloat16 && T > 4;
          expect_close(y, ref, absd, bf16_gemm ? 1e-2 : 1e-4,
                       bf16_gemm ? 1.0 / 128 : xt == at::kBFloat16 ? 1.0 / 256 : 0.0, what);
          if (T <= kGemvMaxTokens) {  // the row kernel directly, no bias
            auto [ref2, absd2] = reference(x, lw.weight.to(at::kFloat), at::Tensor());
            auto fmt = wt == at::kFloat ? WeightFormat::kF32 : WeightFormat::kBF16;
            expect_close(gemv_forward(x, lw.weight, fmt, at::Tensor(), at::Tensor()), ref2, absd2, 1e-4,
                         xt == at::kBFloat16 ? 1.0 / 256 : 0.0, what + " gemv");
          }
        }
      }
    }
  }
}

TEST_P(Kernels, ThreadCountDoesNotChangeResult) {
  at::manual_seed(12);
  auto lw = make_quantized_linear(at::randn({1000, 96}), at::randn({1000}), 4);
  auto x = at::randn({3, 96});
  const int saved = at::get_num_threads();
  at::set_num_threads(1);
  auto y1 = linear_forward(x, lw);
  at::set_num_threads(2);
  auto y2 = linear_forward(x, lw);
  at::set_num_threads(saved);
  EXPECT_TRUE(at::equal(y1, y2));  // rows are independent: bitwise identical
}

TEST_P(Kernels, NonContiguousInputAndRejectsBadShapes) {
  at::manual_seed(13);
  auto lw = make_quantized_linear(at::randn({20, 40}), at::Tensor(), 8);
  auto xbig = at::randn({2, 80});
  auto x = xbig.slice(1, 0, 80, 2);  // [2, 40], stride 2
  auto [ref, absd] = reference(x, dequantize(lw.weight, lw.scale, 8, at::kFloat), at::Tensor());
  expect_close(linear_forward(x, lw), ref, absd, 1e-4, 0.0, "strided x");
  EXPECT_THROW(gemv_forward(at::randn({1, 41}), lw.weight, WeightFormat::kInt8, lw.scale, at::Tensor()), std::exception);
  EXPECT_THROW(gemv_forward(at::randn({1, 40}), lw.weight, WeightFormat::kInt4, lw.scale, at::Tensor()), std::exception);
}

INSTANTIATE_TEST_SUITE_P(Paths, Kernels, ::testing::Values(KernelIsa::kPortable, KernelIsa::kAvx2, KernelIsa::kAvx512),
                         [](const auto& info) { return std::string(kernel_isa_name(info.param)); });

// One-token int8/int4 calls on AVX-512 (int4 on AVX2) compute exactly on x rounded to int8 per 32-column block
// (up to fp32 accumulation): checked against the double reference on the rounded x, 1e-4·A, at
// shapes with 1 to 32 blocks, row counts off the 8-row blocks, scales spanning 6 decades, blocks of
// zeros, and outliers (one column 50× the rest, as ChatGLM's hidden states have).
TEST_P(Kernels, OneTokenInt8ActivationsEqualRoundedReference) {
  if (GetParam() == KernelIsa::kPortable) GTEST_SKIP() << "the portable kernels keep x in fp32";
  at::manual_seed(14);
  for (int bits : {8, 4})
    for (const Shape& s : {Shape{37, 128}, Shape{19, 4096}, Shape{8, 1152}, Shape{300, 256}}) {
      if (!int8_activations(1, s.in, bits)) continue;  // AVX2: int4 only
      auto lw = make_quantized_linear(at::randn({s.out, s.in}) * at::logspace(-3, 3, s.out).unsqueeze(1),
                                      at::randn({s.out}), bits);
      auto wf = dequantize(lw.weight, lw.scale, bits, at::kFloat);
      auto x = at::randn({1, s.in});
      x.index_put_({0, 3}, 50.0);
      if (s.in >= 256) x.narrow(1, 128, 32).zero_();  // a block of zeros (scale 1, all x8 = 0)
      auto y = linear_forward(x, lw);
      auto [ref, absd] = reference(round_x_int8(x).first, wf, lw.bias);
      expect_close(y, ref, absd, 1e-4, 0.0, "bits " + std::to_string(bits) + " out " + std::to_string(s.out) +
                                                " in " + std::to_string(s.in));
      // and the rounding is really there: y is not the reference on the unrounded x
      auto [exact, absd_exact] = reference(x, wf, lw.bias);
      EXPECT_GT((y.to(at::kDouble) - exact).abs().max().item<double>(), 0.0);
    }
}

// Non-finite activations never reach the int8 rounding (its scale would be NaN): the float kernel
// runs and the NaN/Inf shows in y as it would in the reference.
TEST_P(Kernels, OneTokenIntNonFiniteXFallsBack) {
  auto lw = make_quantized_linear(at::randn({16, 256}), at::Tensor(), 4);
  auto x = at::randn({1, 256});
  x.index_put_({0, 200}, std::numeric_limits<float>::infinity());
  auto y = linear_forward(x, lw);
  EXPECT_FALSE(at::isfinite(y).all().item<bool>());
}

// Every format runs the widest family the CPU has (so every process of a pipeline makes the same
// choice and ranks agree bit for bit with one process); forcing overrides it.
TEST(KernelsCpu, EveryFormatRunsTheWidestFamily) {
  force_kernel_isa(std::nullopt);
  if (std::getenv("GLMPIPE_KERNEL_ISA")) GTEST_SKIP() << "GLMPIPE_KERNEL_ISA is set";
  const KernelIsa widest = kernel_isa_supported(KernelIsa::kAvx512) ? KernelIsa::kAvx512
                           : kernel_isa_supported(KernelIsa::kAvx2) ? KernelIsa::kAvx2 : KernelIsa::kPortable;
  for (WeightFormat f : {WeightFormat::kF32, WeightFormat::kBF16, WeightFormat::kInt8, WeightFormat::kInt4})
    EXPECT_EQ(gemv_isa_for(f), widest);
  force_kernel_isa(KernelIsa::kPortable);
  EXPECT_EQ(gemv_isa_for(WeightFormat::kInt4), KernelIsa::kPortable);
  force_kernel_isa(std::nullopt);
  std::printf("kernels on this CPU: %s\n", gemv_kernel_isa().c_str());
  for (KernelIsa k : {KernelIsa::kAvx2, KernelIsa::kAvx512})
    if (!kernel_isa_supported(k)) std::printf("NOTE: the %s kernels were not exercised (this CPU cannot run them)\n", kernel_isa_name(k));
}

}  // namespace
}  // namespace glmpipe
