// ActivationHeader: layout, dtype mapping, and validate() rejecting every kind of bad field with a
// message that names both ranks and the field.
#include <gtest/gtest.h>

#include <cstddef>

#include "comm/wire_header.h"
#include "common/error.h"

namespace glmpipe {
namespace {

std::string error_of(const ActivationHeader& h, const Expectation& want) {
  try {
    validate(h, want, 2, 1);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_REJECTED(h, want, text)                                           \
  do {                                                                          \
    std::string msg_ = error_of(h, want);                                       \
    EXPECT_NE(msg_.find(text), std::string::npos) << "got: '" << msg_ << "'";   \
  } while (0)

ActivationHeader good() { return make_header(Tag::kActivations, 3, 9, at::zeros({4, 4096}, at::kFloat)); }

TEST(WireHeaderTest, LayoutIsFixed) {
  EXPECT_EQ(sizeof(ActivationHeader), 88u);
  EXPECT_EQ(offsetof(ActivationHeader, tag), 6u);
  EXPECT_EQ(offsetof(ActivationHeader, step), 8u);
  EXPECT_EQ(offsetof(ActivationHeader, seq_id), 16u);
  EXPECT_EQ(offsetof(ActivationHeader, dtype), 24u);
  EXPECT_EQ(offsetof(ActivationHeader, shape), 32u);
  EXPECT_EQ(offsetof(ActivationHeader, nbytes), 80u);
  ActivationHeader h;
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(&h.magic), 4), "GLMP");
}

TEST(WireHeaderTest, MakeHeaderDescribesTheTensor) {
  ActivationHeader h = make_header(Tag::kTokens, 5, 11, at::zeros({2, 3, 7}, at::kBFloat16));
  EXPECT_EQ(h.tag, uint16_t(Tag::kTokens));
  EXPECT_EQ(h.step, 5);
  EXPECT_EQ(h.seq_id, 11);
  EXPECT_EQ(h.dtype, int32_t(DType::kBF16));
  EXPECT_EQ(header_shape(h), (std::vector<int64_t>{2, 3, 7}));
  EXPECT_EQ(h.nbytes, 2 * 3 * 7 * 2);
  EXPECT_NO_THROW(validate(h, {}, 0, 1));
  EXPECT_THROW(make_header(Tag::kProbe, 0, 0, at::zeros({2, 3}).t()), Error);       // not contiguous
  EXPECT_THROW(make_header(Tag::kProbe, 0, 0, at::zeros({2}, at::kDouble)), Error);  // f64 unsupported
  EXPECT_THROW(make_header(Tag::kProbe, 0, 0, at::zeros({1, 1, 1, 1, 1, 1, 1})), Error);
}

TEST(WireHeaderTest, DtypeMappingRoundTrips) {
  for (auto st : {at::kFloat, at::kHalf, at::kBFloat16, at::kInt, at::kLong, at::kByte}) {
    EXPECT_EQ(to_scalar_type(to_dtype(st)), st);
    EXPECT_EQ(dtype_size(to_dtype(st)), int64_t(c10::elementSize(st)));
  }
}

TEST(WireHeaderTest, ExpectationMismatchesNameRanksAndField) {
  Expectation want;
  want.dtype = DType::kF32;
  want.tag = Tag::kActivations;
  want.shape = {-1, 4096};
  want.seq_id = 9;
  want.step = 3;
  EXPECT_NO_THROW(validate(good(), want, 2, 1));

  ActivationHeader bf = make_header(Tag::kActivations, 3, 9, at::zeros({4, 4096}, at::kBFloat16));
  EXPECT_REJECTED(bf, want, "rank 2 received from rank 1: dtype bf16, expected f32");
  ActivationHeader other_shape = make_header(Tag::kActivations, 3, 9, at::zeros({4, 4095}));
  EXPECT_REJECTED(other_shape, want, "rank 2 received from rank 1: shape [4, 4095], expected [-1, 4096] (dim 1)");
  ActivationHeader three_d = make_header(Tag::kActivations, 3, 9, at::zeros({1, 4, 4096}));
  EXPECT_REJECTED(three_d, want, "ndim 3 (shape [1, 4, 4096]), expected 2");
  ActivationHeader h = good();
  h.tag = uint16_t(Tag::kTokens);
  EXPECT_REJECTED(h, want, "tag tokens, expected activations");
  h = good();
  h.seq_id = 10;
  EXPECT_REJECTED(h, want, "seq_id 10, expected 9");
  h = good();
  h.step = 4;
  EXPECT_REJECTED(h, want, "step 4, expected 3");
  Expectation small;
  small.max_bytes = 1024;
  EXPECT_REJECTED(good(), small, "exceeds the cap of 1024 bytes");
}

TEST(WireHeaderTest, CorruptHeadersAreRejectedBeforeExpectations) {
  ActivationHeader h = good();
  h.magic = 0x12345678;
  EXPECT_REJECTED(h, {}, "rank 2 received from rank 1: bad magic 0x12345678, expected 0x504d4c47 ('GLMP'). HINT");
  h = good();
  h.version = 7;
  EXPECT_REJECTED(h, {}, "wire version 7, expected 1. HINT: all ranks must run the same glmpipe build");
  h = good();
  h.dtype = 42;
  EXPECT_REJECTED(h, {}, "unknown dtype code 42");
  h = good();
  h.tag = 99;
  EXPECT_REJECTED(h, {}, "unknown tag code 99");
  h = good();
  h.ndim = 7;
  EXPECT_REJECTED(h, {}, "ndim 7 out of range [0, 6]");
  h = good();
  h.ndim = -1;
  EXPECT_REJECTED(h, {}, "ndim -1 out of range");
  h = good();
  h.nbytes += 4;
  EXPECT_REJECTED(h, {}, "nbytes 65540 != numel 16384 * 4 (f32)");
  h = good();
  h.shape[0] = -4;
  EXPECT_REJECTED(h, {}, "shape dim 0 = -4 is out of range");
  h = good();  // numel overflow attempt: huge dims whose product wraps
  h.shape[0] = int64_t(1) << 40;
  h.shape[1] = int64_t(1) << 40;
  EXPECT_REJECTED(h, {}, "shape [1099511627776, 1099511627776] exceeds the cap of 1073741824 bytes");
  h = good();
  h.ndim = 6;
  for (int i = 0; i < 6; ++i) h.shape[i] = 1 << 20;
  EXPECT_REJECTED(h, {}, "exceeds the cap");
}

}  // namespace
}  // namespace glmpipe
