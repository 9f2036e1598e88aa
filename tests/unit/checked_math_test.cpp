// common/checked.h: the overflow flag is sticky and every wrap is seen.
#include <gtest/gtest.h>

#include <limits>

#include "common/checked.h"

namespace glmpipe {
namespace {

TEST(CheckedMath, AddMulWrapIsPoisonAndSticky) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  EXPECT_TRUE((CheckedU64(max - 1) + 1).fits(max));
  EXPECT_FALSE((CheckedU64(max) + 1).ok());
  EXPECT_FALSE(((CheckedU64(max) + 1) * 0).ok());  // sticky: x 0 does not heal it
  EXPECT_FALSE((CheckedU64(uint64_t{1} << 32) * (uint64_t{1} << 32)).ok());
  EXPECT_EQ((CheckedU64(1000) * 8 + 8).value(), 8008u);
  EXPECT_FALSE((CheckedU64(5) - 6).ok());
  EXPECT_FALSE((CheckedI64(INT64_MAX) + 1).ok());
  EXPECT_FALSE((CheckedI64(INT64_MIN) - 1).ok());
  EXPECT_FALSE((CheckedI64(int64_t{1} << 62) * 2).ok());
  EXPECT_FALSE((CheckedU64(10) + 1).fits(10));
}

TEST(CheckedMath, ConversionsAndSaturation) {
  EXPECT_FALSE(CheckedU64::from(int64_t{-1}).ok());
  EXPECT_TRUE(CheckedU64::from(int64_t{7}).fits(7));
  EXPECT_FALSE(Checked<int32_t>::from(int64_t{4294967297}).ok());  // would wrap to 1
  EXPECT_EQ(sat_mul(int64_t{1} << 40, int64_t{1} << 40), INT64_MAX);
  EXPECT_EQ(sat_add(INT64_MAX, 1), INT64_MAX);
  EXPECT_EQ(sat_add(3, 4), 7);
  EXPECT_FALSE(CheckedI64::poisoned().ok());
}

}  // namespace
}  // namespace glmpipe
