// Each pipeline rank's peak RSS is close to what the plan gave it: the growth of VmHWM over the
// process's RSS before loading is at least the weights it loaded and at most its planned weights +
// KV cache + activations plus a small constant (and never the whole model).
#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "checkpoint/tiny_model.h"
#include "tests/test_util.h"

using namespace glmpipe;

TEST(RankMemory, PeakRssPerRankMatchesThePlan) {
  const std::string dir = test::make_temp_dir("rank_mem");
  TinyModelOptions o;
  o.layers = 8;
  o.hidden = 512;
  o.heads = 8;
  o.vocab = 16000;
  o.seed = 2;
  make_tiny_model(dir + "/model", o);  // fp32: ~33 MB embedding + 8 x 12.6 MB blocks
  std::ofstream(dir + "/three.yaml") << "model: {path: " << dir << "/model, dtype: float32}\nranks:\n"
                                     << "  - {device: cpu, max_memory: 1GiB, threads: 1}\n"
                                     << "  - {device: cpu, max_memory: 1GiB, threads: 1}\n"
                                     << "  - {device: cpu, max_memory: 1GiB, threads: 1}\n"
                                     << "placement: balanced\nkv_cache: {max_batch: 1, max_seq_len: 64}\nreserve: {cpu: 64MiB}\n";
  auto r = test::run_command("timeout 120 " + test::glmpipe_bin() + " generate --config " + dir +
                             "/three.yaml --ids 1,2,3,15996,15997 --max-new-tokens 4 --greedy --print-ids");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::regex line(R"(\[r(\d)/3 s\d\] \[info\] memory: peak_rss (\d+) start_rss (\d+) planned_weights (\d+) planned_kv (\d+) planned_activations (\d+) loaded_weights (\d+))");
  int ranks = 0;
  int64_t model_bytes = 0;
  for (auto it = std::sregex_iterator(r.err.begin(), r.err.end(), line); it != std::sregex_iterator(); ++it) {
    const auto& m = *it;
    const int64_t peak = std::stoll(m[2]), start = std::stoll(m[3]), weights = std::stoll(m[4]), kv = std::stoll(m[5]),
                  act = std::stoll(m[6]), loaded = std::stoll(m[7]);
    const int64_t growth = peak - start;
    model_bytes += loaded;
    EXPECT_GE(growth, loaded * 9 / 10) << "rank " << m[1] << ": did it load its weights?";
    EXPECT_LE(growth, weights + kv + act + (48 << 20)) << "rank " << m[1] << " grew " << growth << " B; plan: weights "
                                                       << weights << ", kv " << kv << ", activations " << act;
    EXPECT_LE(loaded, weights) << "rank " << m[1] << " holds more weights than planned";
    ++ranks;
  }
  EXPECT_EQ(ranks, 3) << r.err;
  // No rank held the whole model: each loaded well under the sum.
  EXPECT_GT(model_bytes, 0);
}
