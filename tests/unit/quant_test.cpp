// int4 packing (hand-computed bytes), quantize/dequantize error bounds, vectorized dequantize.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

#include "model/qgemv.h"
#include "model/quant.h"

namespace glmpipe {
namespace {

at::Tensor int8_tensor(const std::vector<int>& v, int64_t rows) {
  std::vector<int8_t> b(v.begin(), v.end());
  return at::tensor(at::ArrayRef<int8_t>(b), at::kChar).view({rows, static_cast<int64_t>(v.size()) / rows}).clone();
}

// Bytes computed by hand: byte j = (q[2j] << 4) | (q[2j+1] & 0xF), as unsigned.
//   row 0: (3,-2) → 0x3E, (-7,7) → 0x97, (0,-1) → 0x0F, (-8,5) → 0x85
//   row 1: (7,-8) → 0x78, (1,2) → 0x12, (-1,0) → 0xF0, (-3,-4) → 0xDC
const std::vector<int> kQ = {3, -2, -7, 7, 0, -1, -8, 5, 7, -8, 1, 2, -1, 0, -3, -4};
const std::vector<unsigned> kPacked = {0x3E, 0x97, 0x0F, 0x85, 0x78, 0x12, 0xF0, 0xDC};

TEST(Int4Pack, PackMatchesHandComputedBytes) {
  auto packed = pack_int4(int8_tensor(kQ, 2));
  ASSERT_EQ(packed.sizes(), (at::IntArrayRef{2, 4}));
  ASSERT_EQ(packed.scalar_type(), at::kChar);
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(static_cast<uint8_t>(packed.data_ptr<int8_t>()[i]), kPacked[i]) << "byte " << i;
}

TEST(Int4Pack, UnpackSignExtendsEvenHighOddLow) {
  std::vector<int> bytes;
  for (unsigned b : kPacked) bytes.push_back(static_cast<int8_t>(static_cast<uint8_t>(b)));
  auto q = unpack_int4(int8_tensor(bytes, 2));
  ASSERT_EQ(q.sizes(), (at::IntArrayRef{2, 8}));
  for (int i = 0; i < 16; ++i) EXPECT_EQ(q.data_ptr<int8_t>()[i], kQ[i]) << "element " << i;
}

TEST(Int4Pack, RoundTripAllNibblePairs) {
  std::vector<int> v;
  for (int a = -8; a <= 7; ++a)
    for (int b = -8; b <= 7; ++b) v.insert(v.end(), {a, b});
  auto q = int8_tensor(v, 16);
  EXPECT_TRUE(at::equal(unpack_int4(pack_int4(q)), q));
  EXPECT_THROW(pack_int4(int8_tensor({8, 0}, 1)), std::exception);
  EXPECT_THROW(pack_int4(int8_tensor({1, 2, 3}, 1)), std::exception);
}

// The one-pass parallel quantizer against the ATen expression it replaced, from fp32, fp16 and bf16
// input, with exact ties (w / scale = k + 0.5), a zero row and a huge-range row.
TEST(Quantize, OnePassEqualsReferenceBitForBit) {
  at::manual_seed(4);
  auto w = at::randn({41, 130}) * at::linspace(1e-4, 30.0, 41).unsqueeze(1);
  w[3].zero_();
  w[7] = at::arange(-65, 65).to(at::kFloat) * 0.5;  // scale 0.5·65/127 in fp16: ties after division
  w[9][0] = 1e4;
  for (auto dt : {at::kFloat, at::kHalf, at::kBFloat16}) {
    for (int bits : {8, 4}) {
      auto wd = w.to(dt);
      auto [q, s] = quantize_rows(wd, bits);
      auto [qr, sr] = quantize_rows_reference(wd, bits);
      EXPECT_TRUE(at::equal(s, sr)) << "scale, bits " << bits << " dtype " << dt;
      EXPECT_TRUE(at::equal(q, qr)) << "weight, bits " << bits << " dtype " << dt;
    }
  }
}

TEST(Quantize, ErrorWithinHalfScalePerRow) {
  at::manual_seed(1);
  auto w = at::randn({23, 70}) * at::linspace(0.01, 3.0, 23).unsqueeze(1);
  w[5].zero_();  // an all-zero row must not produce NaN
  for (int bits : {8, 4}) {
    auto [q, scale] = quantize_rows(w, bits);
    EXPECT_EQ(scale.scalar_type(), at::kHalf);
    EXPECT_EQ(q.size(1), bits == 8 ? 70 : 35);
    const double qmax = bits == 8 ? 127 : 7;
    // The scale is max|w|/qmax rounded to fp16.
    auto expect_scale = w.abs().amax(1) / qmax;
    EXPECT_TRUE(at::allclose(scale.to(at::kFloat), expect_scale, 1e-3, 1e-7));
    auto deq = dequantize(q, scale, bits, at::kFloat);
    auto err = (deq - w).abs();
    auto bound = scale.to(at::kFloat).unsqueeze(1) * 0.5 * (1 + 1e-5) + 1e-12;
    // fp16 rounding of the scale can push the row max beyond qmax·scale by < 1 ulp of fp16: allow it.
    auto slack = w.abs().amax(1, true) * 1e-3;
    EXPECT_TRUE((err <= bound + slack).all().item<bool>()) << "bits " << bits << " max err " << err.max().item<float>();
    EXPECT_FALSE(deq.isnan().any().item<bool>());
    auto qi = bits == 8 ? q : unpack_int4(q);
    EXPECT_LE(qi.abs().max().item<int>(), static_cast<int>(qmax));
  }
}

TEST(Quantize, MakeQuantizedLinearStoresFp32Scale) {
  at::manual_seed(2);
  auto w = at::randn({9, 12});
  auto lw = make_quantized_linear(w, at::randn({9}), 4);
  EXPECT_EQ(lw.bits, 4);
  EXPECT_EQ(lw.scale.scalar_type(), at::kFloat);
  EXPECT_EQ(lw.weight.sizes(), (at::IntArrayRef{9, 6}));
  EXPECT_EQ(lw.in_features, 12);
  EXPECT_EQ(lw.weight_bytes(), 9 * 6 + 9 * 4 + 9 * 4);
}

class DequantizeInto : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (!GetParam() && !kernel_isa_supported(KernelIsa::kAvx512)) GTEST_SKIP() << "no AVX-512: the vectorized dequantize cannot run";
    set_portable_kernels(GetParam());
  }
  void TearDown() override { set_portable_kernels(false); }
};

TEST_P(DequantizeInto, MatchesReferenceDequantize) {
  at::manual_seed(3);
  for (int bits : {8, 4}) {
    for (int64_t in : {2, 30, 32, 66, 130}) {
      auto lw = make_quantized_linear(at::randn({13, in}), at::Tensor(), bits);
      auto ref = dequantize(lw.weight, lw.scale, bits, at::kFloat);
      auto out = at::empty({13, in});
      dequantize_into(lw.weight, lw.scale, bits, out);
      EXPECT_TRUE(at::equal(out, ref)) << "bits " << bits << " in " << in;  // both are q·s in fp32
      auto outb = at::empty({13, in}, at::kBFloat16);
      dequantize_into(lw.weight, lw.scale, bits, outb);
      EXPECT_TRUE(at::equal(outb, ref.to(at::kBFloat16))) << "bf16, bits " << bits << " in " << in;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, DequantizeInto, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "portable" : "avx512"; });

}  // namespace
}  // namespace glmpipe
