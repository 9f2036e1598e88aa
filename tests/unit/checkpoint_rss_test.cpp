// Peak-RSS bound of Checkpoint::load: a ~330 MB fp16 4-shard .bin checkpoint is written by the
// CLI, then a CHILD process (`glmpipe inspect --load-layers`) loads a layer range as fp32 and
// reports VmHWM before/after. Peak growth must stay within the bytes kept + the largest tensor +
// 32 MiB; without releasing the mapped source pages it would also hold the fp16 source range.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace glmpipe {
namespace {

TEST(CheckpointRss, LoadingALayerRangeKeepsPeakNearKeptBytes) {
  const std::string dir = test::make_temp_dir("ckpt_rss");
  // 13 layers * 12 * 1024^2 params * 2 bytes = 327 MB of fp16 block weights.
  test::RunResult w = test::run_command(test::glmpipe_bin() + " make-tiny-model '" + dir +
                                        "' --layers 13 --hidden 1024 --heads 16 --vocab 256 --dtype float16"
                                        " --format bin --shards 4");
  ASSERT_EQ(w.exit_code, 0) << w.err;
  test::RunResult size = test::run_command("du -sb '" + dir + "' | cut -f1");
  EXPECT_GE(std::stoll(size.out), 300LL << 20);

  test::RunResult r = test::run_command(test::glmpipe_bin() + " inspect '" + dir +
                                        "' --load-layers 3-7 --dtype float32");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  const int64_t loaded = j["loaded_bytes"];
  const int64_t largest = j["largest_tensor_disk_bytes"];
  const int64_t growth = (j["vmhwm_after_kb"].get<int64_t>() - j["vmhwm_before_kb"].get<int64_t>()) * 1024;
  // 5 layers of fp32: 5 * 12 * 1024^2 * 4 bytes (+ biases and LayerNorms)
  EXPECT_GE(loaded, 5LL * 12 * 1024 * 1024 * 4);
  EXPECT_LE(growth, loaded + largest + (32LL << 20))
      << "peak RSS grew by " << (growth >> 20) << " MiB for " << (loaded >> 20) << " MiB kept: " << r.out;
  std::cout << "[rss] loaded " << (loaded >> 20) << " MiB, peak growth " << (growth >> 20) << " MiB, largest tensor "
            << (largest >> 20) << " MiB\n";
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace
}  // namespace glmpipe
