// The pipeline through the CLI, as users run it: `glmpipe forward|generate --config C.yaml`
// re-executes itself under mpirun with one process per stage. Every result must be bit-identical
// (fp32) to the single-process run; failures must end every process quickly with the cause shown.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <iostream>
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

// A process that exists and is not a zombie (a stopped one counts as alive).
bool alive(int pid) {
  std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_s, comm, state;
  if (!(st >> pid_s >> comm >> state)) return false;
  return state != "Z";
}

// A long 3-rank generation in the background (pids in pids/, output in `log`, exit code in rc).
class PipelineFailure : public PipelineCli {
 protected:
  void launch(const std::string& extra) {
    std::system(("mkdir -p " + pids()).c_str());
    std::string cmd = "( GLMPIPE_PID_DIR=" + pids() + " timeout 120 " + test::glmpipe_bin() + " generate --config " +
                      configs_[1] + " --model " + model_ + " --max-seq 4096 --ids 11,42,7,296,297 --max-new-tokens 4000" +
                      " --temperature 1.5 --top-k 0 --top-p 1 --print-ids " + extra + " > " + log() + " 2>&1; echo $? > " +
                      dir_ + "/rc ) &";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    const std::string pidfile = pids() + "/rank1.pid";
    for (int i = 0; i < 300 && !test::file_exists(pidfile); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_TRUE(test::file_exists(pidfile)) << "rank 1 never started";
    std::this_thread::sleep_for(std::chrono::milliseconds(700));  // mid-generation
    ASSERT_FALSE(test::file_exists(dir_ + "/rc")) << "generation finished before the fault; make it longer";
  }
  int rank_pid(int r) {
    int pid = 0;
    std::ifstream(pids() + "/rank" + std::to_string(r) + ".pid") >> pid;
    return pid;
  }
  // Seconds from t0 until the job's exit code is written (at most `limit`); the code in `code`.
  double wait_exit(std::chrono::steady_clock::time_point t0, double limit, int& code) {
    while (!test::file_exists(dir_ + "/rc") && std::chrono::steady_clock::now() - t0 < std::chrono::duration<double>(limit))
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    code = -1;
    std::ifstream(dir_ + "/rc") >> code;
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  // Every rank's process is gone (or a zombie awaiting its reaper) by t0 + `bound` seconds.
  void expect_no_survivor(std::chrono::steady_clock::time_point t0, double bound) {
    for (int r = 0; r < 3; ++r) {
      const int rp = rank_pid(r);
      while (rp > 0 && alive(rp) && std::chrono::steady_clock::now() - t0 < std::chrono::duration<double>(bound))
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (rp > 0) EXPECT_FALSE(alive(rp)) << "rank " << r << " (pid " << rp << ") still alive " << bound << " s after the fault";
    }
  }
  std::string pids() const { return dir_ + "/pids"; }
  std::string log() const { return dir_ + "/fault.log"; }
};

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
  launch("");
  const int pid = rank_pid(1);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int code = 0;
  const double s = wait_exit(t0, 30, code);
  ASSERT_TRUE(test::file_exists(dir_ + "/rc")) << "processes still running 30 s after the kill";
  EXPECT_LT(s, 10.0);
  EXPECT_NE(code, 0);
  const std::string text = test::read_file(log());
  EXPECT_NE(text.find("rank 1"), std::string::npos) << "the lost rank is not named:\n" << text;
  expect_no_survivor(t0, 10);
}

// SIGSTOP: rank 1 stays alive but silent. With --liveness-timeout 3 every process must be gone
// within 3 + 10 s, non-zero, with a message naming rank 1 as the silent one.
TEST_P(PipelineFailure, StoppedMiddleRankEndsEveryProcessWithinBoundPlus10s) {
  const double bound = 3;
  launch("--liveness-timeout 3");
  const int pid = rank_pid(1);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  int code = 0;
  const double s = wait_exit(t0, bound + 30, code);
  const bool ended = test::file_exists(dir_ + "/rc");
  if (!ended || alive(pid)) kill(pid, SIGKILL);  // never leave a stopped rank behind
  ASSERT_TRUE(ended) << "processes still running " << bound + 30 << " s after SIGSTOP:\n" << test::read_file(log());
  EXPECT_LT(s, bound + 10);
  std::cout << "[ measure  ] job exited " << s << " s after SIGSTOP of rank 1 (bound " << bound << " s)" << std::endl;
  EXPECT_NE(code, 0);
  const std::string text = test::read_file(log());
  EXPECT_NE(text.find("rank 1 (stage 1) silent for"), std::string::npos) << "the stalled rank is not named:\n" << text;
  expect_no_survivor(t0, bound + 10);
}

// A rank that hangs inside a micro-batch while its process (and heartbeats) stay alive, as with a
// GPU hang: the first stage's bounded wait for tokens ends the job and names the rank computing.
TEST_P(PipelineFailure, RankHungInComputeEndsTheJobNamingIt) {
  auto t0 = std::chrono::steady_clock::now();
  auto r = test::run_command("GLMPIPE_HANG=1:4 timeout 60 " + test::glmpipe_bin() + " generate --config " + configs_[1] +
                             " --model " + model_ + " --ids 11,42,7,296,297 --max-new-tokens 50 --greedy --print-ids"
                             " --liveness-timeout 3");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, 124) << "timed out: the hang was not detected";
  EXPECT_NE(r.err.find("no kTokens reply from rank 2 (stage 2)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("rank 1 (stage 1): computing micro-batch 4"), std::string::npos) << r.err;
  EXPECT_LT(s, 30.0);
}

INSTANTIATE_TEST_SUITE_P(Safetensors, PipelineFailure, ::testing::Values("safetensors"));

}  // namespace
