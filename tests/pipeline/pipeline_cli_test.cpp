// The pipeline through the CLI, as users run it: `glmpipe forward|generate --config C.yaml`
// re-executes itself under mpirun with one process per stage. Every result must be bit-identical
// (fp32) to the single-process run; failures must end every process quickly with the cause shown.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include <signal.h>

#include "checkpoint/tiny_model.h"
#include "common/npy.h"
#include "tests/test_util.h"

using namespace glmpipe;

namespace {

std::string write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

// A CPU deployment of `n` one-thread ranks with the given placement (YAML flow text).
std::string deployment(const std::string& dir, const std::string& name, int n, const std::string& placement) {
  std::string y = "model: {path: unused, dtype: float32}\nranks:\n";
  for (int i = 0; i < n; ++i) y += "  - {device: cpu, max_memory: 2GiB, threads: 1}\n";
  y += "placement: " + placement + "\nkv_cache: {max_batch: 2, max_seq_len: 4096}\nreserve: {cpu: 64MiB}\n";
  return write_file(dir + "/" + name + ".yaml", y);
}

class PipelineCli : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("pipe");
    TinyModelOptions o;
    o.layers = 6;
    o.hidden = 64;
    o.heads = 4;
    o.vocab = 300;
    o.seed = 11;
    o.format = GetParam() == "bin" ? CheckpointFormat::kBin : CheckpointFormat::kSafetensors;
    o.shards = 2;
    model_ = dir_ + "/model";
    make_tiny_model(model_, o);
    configs_ = {
        deployment(dir_, "two", 2, "balanced"),
        deployment(dir_, "three", 3, "balanced"),
        // embedding alone on rank 0 and the head alone on the last rank
        deployment(dir_, "three_map", 3,
                   "{transformer.word_embeddings: 0, transformer.layers.0-5: 1, transformer.final_layernorm: 2, lm_head: 2}"),
        deployment(dir_, "four_map", 4,
                   "{transformer.word_embeddings: 0, transformer.layers.0-2: 1, transformer.layers.3-5: 2, "
                   "transformer.final_layernorm: 3, lm_head: 3}"),
    };
  }
  test::RunResult glmpipe(const std::string& args) {
    return test::run_command("timeout 120 " + test::glmpipe_bin() + " " + args);
  }
  std::string dir_, model_;
  std::vector<std::string> configs_;
  const std::string ids_ = "11,42,7,150,296,297,33,201,5,77";
};

TEST_P(PipelineCli, ForwardLogitsBitIdenticalToSingleProcess) {
  auto single = glmpipe("forward --model " + model_ + " --threads 1 --ids " + ids_ + " --prefill 6 --out " + dir_ + "/single.npy");
  ASSERT_EQ(single.exit_code, 0) << single.err;
  auto want = load_npy(dir_ + "/single.npy");
  ASSERT_EQ(want.size(0), 10);
  for (const auto& cfg : configs_) {
    const std::string out = dir_ + "/pipe.npy";
    std::remove(out.c_str());
    auto r = glmpipe("forward --config " + cfg + " --model " + model_ + " --ids " + ids_ + " --prefill 6 --out " + out);
    ASSERT_EQ(r.exit_code, 0) << cfg << "\n" << r.err;
    auto got = load_npy(out);
    ASSERT_EQ(got.sizes(), want.sizes()) << cfg;
    EXPECT_TRUE(at::equal(got, want)) << cfg << ": max diff " << (got - want).abs().max().item<float>();
  }
}

TEST_P(PipelineCli, GreedyGenerateIdenticalToSingleProcess) {
  const std::string gen = " --ids 11,42,7,150,296,297 --max-new-tokens 12 --greedy --print-ids";
  auto single = glmpipe("generate --model " + model_ + " --threads 1" + gen);
  ASSERT_EQ(single.exit_code, 0) << single.err;
  ASSERT_FALSE(single.out.empty());
  for (const auto& cfg : configs_) {
    auto r = glmpipe("generate --config " + cfg + " --model " + model_ + gen);
    ASSERT_EQ(r.exit_code, 0) << cfg << "\n" << r.err;
    EXPECT_EQ(r.out, single.out) << cfg;
    EXPECT_NE(r.err.find("stage 1/"), std::string::npos) << "per-stage timings missing:\n" << r.err;
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, PipelineCli, ::testing::Values("bin", "safetensors"));

class PipelineFailure : public PipelineCli {};

TEST_P(PipelineFailure, ErrorOnMiddleRankEndsEveryProcess) {
  // GLMPIPE_FAULT is read from the environment of every rank (mpirun forwards GLMPIPE_*).
  auto t0 = std::chrono::steady_clock::now();
  auto rf = test::run_command("GLMPIPE_FAULT=1:3 timeout 60 " + test::glmpipe_bin() + " generate --config " + configs_[1] +
                              " --model " + model_ + " --ids 11,42,7,296,297 --max-new-tokens 50 --greedy --print-ids");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(rf.exit_code, 0);
  EXPECT_NE(rf.exit_code, 124) << "timed out: a rank hung";
  EXPECT_NE(rf.err.find("injected fault"), std::string::npos) << rf.err;
  EXPECT_NE(rf.err.find("r1/3"), std::string::npos) << "the failing rank is not named:\n" << rf.err;
  EXPECT_LT(s, 30.0);
}

TEST_P(PipelineFailure, KilledMiddleRankEndsEveryProcessWithin10s) {
  const std::string pids = dir_ + "/pids";
  std::system(("mkdir -p " + pids).c_str());
  const std::string log = dir_ + "/kill.log";
  // Long generation in the background; its pid and exit code go to files.
  std::string cmd = "( GLMPIPE_PID_DIR=" + pids + " timeout 120 " + test::glmpipe_bin() + " generate --config " +
                    configs_[1] + " --model " + model_ + " --max-seq 4096 --ids 11,42,7,296,297 --max-new-tokens 4000" +
                    " --temperature 1.5 --top-k 0 --top-p 1 --print-ids > " + log + " 2>&1; echo $? > " + dir_ +
                    "/rc ) &";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const std::string pidfile = pids + "/rank1.pid";
  for (int i = 0; i < 300 && !test::file_exists(pidfile); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(test::file_exists(pidfile)) << "rank 1 never started";
  std::this_thread::sleep_for(std::chrono::milliseconds(700));  // mid-generation
  ASSERT_FALSE(test::file_exists(dir_ + "/rc")) << "generation finished before the kill; make it longer";
  std::ifstream pf(pidfile);
  int pid = 0;
  pf >> pid;
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(std::system(("kill -9 " + std::to_string(pid)).c_str()), 0);
  while (!test::file_exists(dir_ + "/rc") &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(test::file_exists(dir_ + "/rc")) << "processes still running 30 s after the kill";
  EXPECT_LT(s, 10.0);
  std::ifstream rc(dir_ + "/rc");
  int code = 0;
  rc >> code;
  EXPECT_NE(code, 0);
  std::ifstream lf(log);
  std::string text((std::istreambuf_iterator<char>(lf)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("rank 1"), std::string::npos) << "the lost rank is not named:\n" << text;
  // No survivor: every rank's process is gone (or a zombie awaiting its reaper) within 10 s.
  auto alive = [](int pid) {
    std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
    std::string pid_s, comm, state;
    if (!(st >> pid_s >> comm >> state)) return false;
    return state != "Z";
  };
  for (int r = 0; r < 3; ++r) {
    std::ifstream p(pids + "/rank" + std::to_string(r) + ".pid");
    int rp = 0;
    p >> rp;
    while (rp > 0 && alive(rp) && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10))
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (rp > 0) EXPECT_FALSE(alive(rp)) << "rank " << r << " (pid " << rp << ") still alive 10 s after the kill";
  }
}

INSTANTIATE_TEST_SUITE_P(Safetensors, PipelineFailure, ::testing::Values("safetensors"));

}  // namespace
