// The disk tier end to end (the scaled-down CI form of bench/bench_disk_tier.sh): a cpu rank whose
// max_memory holds far less than the model serves every unit from disk — the checkpoint's own pages
// when it is stored in the compute dtype, else a converted copy written once into disk.path — and
// releases a unit's pages after each use. Its fp32 logits are bit-identical to the resident run's,
// its VmHWM stays within max_memory, well below the resident run's; and ranks[].max_memory is
// enforced: a rank whose resident memory passes it stops at load with the plan beside the measure.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>
#include <regex>

#include "model/tiny_model.h"
#include "tests/test_util.h"

using namespace glmpipe;

namespace {

struct Memory {
  int64_t peak = 0, start = 0, budget = 0;
};

Memory memory_of(const std::string& log) {
  std::smatch m;
  Memory out;
  static const std::regex line(R"(memory: peak_rss (\d+) start_rss (\d+) .* budget (\d+))");
  if (std::regex_search(log, m, line)) out = {std::stoll(m[1]), std::stoll(m[2]), std::stoll(m[3])};
  return out;
}

class DiskTier : public ::testing::Test {
 protected:
  void make(at::ScalarType dtype) {
    dir_ = test::make_temp_dir("disk_tier");
    TinyModelOptions o;
    o.layers = 6;
    o.hidden = 512;
    o.heads = 8;
    o.vocab = 16000;
    o.seed = 4;
    o.dtype = dtype;
    make_tiny_model(dir_ + "/model", o);  // fp32: 32.8 MB embedding (tied head) + 6 x 12.6 MB blocks
  }
  test::RunResult forward(const std::string& where, const std::string& out) {
    return test::run_command("timeout 300 " + test::glmpipe_bin() + " forward " + where +
                             " --ids 1,2,3,15996,15997,7,9 --prefill 4 --out " + dir_ + "/" + out);
  }
  // One cpu rank, every unit on disk; the reserve is the process itself (measured by the resident
  // run), the budget that plus room for one unit (the 32.8 MB embedding/head) and the KV cache.
  std::string disk_config(int64_t start_rss, const std::string& dtype) {
    const int64_t reserve = start_rss + (24 << 20), budget = reserve + (48 << 20);
    const std::string path = dir_ + "/disk.yaml";
    std::ofstream(path) << "model: {path: " << dir_ << "/model, dtype: " << dtype << "}\n"
                        << "ranks: [{device: cpu, max_memory: " << budget << ", threads: 1}]\n"
                        << "kv_cache: {max_batch: 1, max_seq_len: 16}\nreserve: {cpu: " << reserve << "}\n"
                        << "disk: {path: " << dir_ << "/offload}\nplacement: {\"\": disk}\n";
    return path;
  }
  std::string dir_;
};

TEST_F(DiskTier, Fp32UnitsComputeFromTheCheckpointsOwnPagesWithinMaxMemory) {
  make(at::kFloat);
  auto res = forward("--model " + dir_ + "/model --threads 1 --max-seq 16", "res.npy");
  ASSERT_EQ(res.exit_code, 0) << res.err;
  const Memory r = memory_of(res.err);
  ASSERT_GT(r.peak, 0) << res.err;
  auto disk = forward("--config " + disk_config(r.start, "float32"), "disk.npy");
  ASSERT_EQ(disk.exit_code, 0) << disk.err;
  const Memory d = memory_of(disk.err);
  ASSERT_GT(d.peak, 0) << disk.err;
  EXPECT_EQ(test::read_file(dir_ + "/res.npy"), test::read_file(dir_ + "/disk.npy")) << "logits differ";
  EXPECT_LE(d.peak, d.budget) << "VmHWM " << d.peak << " passed max_memory " << d.budget;
  // Resident: ~108 MB of weights on top of the process; disk: one unit at a time.
  EXPECT_LT(d.peak - d.start, r.peak - r.start - (50 << 20)) << "resident " << r.peak - r.start << ", disk "
                                                              << d.peak - d.start;
  EXPECT_NE(disk.err.find("disk tier: 8 units"), std::string::npos) << disk.err;
  EXPECT_NE(disk.err.find("0 converted"), std::string::npos) << "fp32 on disk needs no copy: " << disk.err;
  struct stat st;
  EXPECT_NE(::stat((dir_ + "/offload/glmpipe-Float").c_str(), &st), 0) << "an offload copy was written";
}

TEST_F(DiskTier, Fp16CheckpointAtFp32IsConvertedOnceIntoTheOffloadFolder) {
  make(at::kHalf);
  auto res = forward("--model " + dir_ + "/model --threads 1 --max-seq 16", "res.npy");
  ASSERT_EQ(res.exit_code, 0) << res.err;
  const std::string cfg = disk_config(memory_of(res.err).start, "float32");
  auto first = forward("--config " + cfg, "disk1.npy");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_NE(first.err.find("7 converted"), std::string::npos) << first.err;
  const std::string copy = dir_ + "/offload/glmpipe-Float/transformer.layers.3.safetensors";
  struct stat st1, st2;
  ASSERT_EQ(::stat(copy.c_str(), &st1), 0) << "no converted copy at " << copy;
  auto second = forward("--config " + cfg, "disk2.npy");
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_NE(second.err.find("0 converted"), std::string::npos) << "written twice: " << second.err;
  ASSERT_EQ(::stat(copy.c_str(), &st2), 0);
  EXPECT_EQ(st1.st_mtime, st2.st_mtime);
  EXPECT_EQ(st1.st_ino, st2.st_ino);
  EXPECT_EQ(test::read_file(dir_ + "/res.npy"), test::read_file(dir_ + "/disk1.npy"));
  EXPECT_EQ(test::read_file(dir_ + "/res.npy"), test::read_file(dir_ + "/disk2.npy"));
  const Memory d = memory_of(second.err);
  EXPECT_LE(d.peak, d.budget);
}

TEST_F(DiskTier, MaxMemoryIsEnforcedAtLoadWithThePlanBesideTheMeasure) {
  make(at::kFloat);
  // No reserve for the process itself: the plan fits (weights + KV + activations), the run cannot.
  std::ofstream(dir_ + "/loose.yaml") << "model: {path: " << dir_ << "/model, dtype: float32}\n"
                                      << "ranks: [{device: cpu, max_memory: 1GiB}]\n"
                                      << "kv_cache: {max_seq_len: 16}\nreserve: {cpu: 0}\n";
  auto plan = test::run_command(test::glmpipe_bin() + " plan --json --config " + dir_ + "/loose.yaml");
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(plan.out, m, std::regex(R"("total": (\d+))"))) << plan.out;
  const int64_t budget = std::stoll(m[1]) + (1 << 20);
  std::ofstream(dir_ + "/tight.yaml") << "model: {path: " << dir_ << "/model, dtype: float32}\n"
                                      << "ranks: [{device: cpu, max_memory: " << budget << "}]\n"
                                      << "kv_cache: {max_seq_len: 16}\nreserve: {cpu: 0}\n";
  auto r = forward("--config " + dir_ + "/tight.yaml", "x.npy");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("rank 0 (cpu): resident memory"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("passed its max_memory"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("plan: weights"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("measured: rss"), std::string::npos) << r.err;
  struct stat st;
  EXPECT_NE(::stat((dir_ + "/x.npy").c_str(), &st), 0) << "it ran anyway";
}

}  // namespace
