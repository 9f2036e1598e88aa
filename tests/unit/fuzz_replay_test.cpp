// Replays every seed (tests/fuzz/corpus/<target>/) and every regression input found by fuzzing
// (tests/fuzz/regressions/<target>/) through the fuzz harnesses in the ordinary build: each input must
// end in success or a glmpipe::Error (a crash or any other exception fails this test), and the seeds
// must include inputs the parsers accept, or the fuzzers would start from nothing useful.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/fuzz/fuzz_targets.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> inputs_of(const std::string& kind, const std::string& target) {
  std::vector<fs::path> out;
  const fs::path dir = fs::path(test::source_dir()) / "tests/fuzz" / kind / target;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename().string()[0] != '.') out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

size_t replay(const fuzz::Target& t, const std::vector<fs::path>& files) {
  size_t accepted = 0;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    SCOPED_TRACE(f.string());
    try {
      accepted += t.run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()) ? 1 : 0;
    } catch (const std::exception& e) {
      ADD_FAILURE() << t.name << ": " << f << " threw a non-glmpipe exception: " << e.what();
    }
  }
  return accepted;
}

TEST(FuzzReplay, SeedCorporaParseOrFailCleanly) {
  ASSERT_EQ(fuzz::targets().size(), 6u);
  for (const auto& t : fuzz::targets()) {
    const auto seeds = inputs_of("corpus", t.name);
    ASSERT_GE(seeds.size(), 3u) << "seed corpus of " << t.name;
    const size_t ok = replay(t, seeds);
    EXPECT_GT(ok, 0u) << t.name << ": no seed is accepted";
    EXPECT_LT(ok, seeds.size()) << t.name << ": the hostile seeds are accepted too";
  }
}

TEST(FuzzReplay, RegressionInputsFailCleanly) {
  for (const auto& t : fuzz::targets()) replay(t, inputs_of("regressions", t.name));
}

}  // namespace
}  // namespace glmpipe
