// wrapper: tests/hosts/slurm.sh run --
// Slurm for real (issue 17): `sbatch configs/slurm_pipeline.sbatch IN OUT` on a one-machine Slurm
// (tests/hosts/slurm.sh: munged + slurmctld + slurmd) runs a 2-stage pipelined batch job to
// completion; a job cancelled with `scancel` mid-way and submitted again resumes, and the output
// holds every id exactly once, with the ids of an uninterrupted single-process run.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "checkpoint/tiny_model.h"
#include "tests/test_util.h"

using namespace glmpipe;
using json = nlohmann::json;

namespace {

using IdMap = std::map<std::string, std::vector<int64_t>>;

// id -> ids of an output file; counts complete lines per id in `dups` (a line cut short by a kill
// may be the last one: it is not counted).
IdMap read_output(const std::string& path, int* dups) {
  IdMap m;
  std::istringstream in(test::read_file(path));
  *dups = 0;
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("id")) continue;
    const std::string id = j["id"].get<std::string>();
    if (m.count(id)) ++*dups;
    m[id] = j["ids"].get<std::vector<int64_t>>();
  }
  return m;
}

class SlurmBatch : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* why = std::getenv("GLMPIPE_SLURM_SKIP")) GTEST_SKIP() << "no Slurm: " << why;
    if (!std::getenv("SLURM_CONF")) GTEST_SKIP() << "not started by tests/hosts/slurm.sh run -- TEST";
    dir_ = test::make_temp_dir("slurm");
    TinyModelOptions o;
    o.layers = 4;
    o.hidden = 64;
    o.heads = 4;
    o.vocab = 300;
    o.seed = 5;
    model_ = dir_ + "/model";
    make_tiny_model(model_, o);
    config_ = dir_ + "/two.yaml";
    std::ofstream(config_) << "model: {path: " << model_ << ", dtype: float32}\nranks:\n"
                           << "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                           << "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                           << "placement: balanced\nkv_cache: {max_batch: 2, max_seq_len: 512}\nreserve: {cpu: 64MiB}\n";
  }
  // sbatch the repository's job script from dir_; returns the job id.
  std::string submit(const std::string& in, const std::string& out) {
    auto r = test::run_command("cd " + dir_ + " && GLMPIPE_CONFIG=" + config_ + " GLMPIPE_BIN=" + test::glmpipe_bin() +
                               " sbatch --parsable --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0 " +
                               test::source_dir() + "/configs/slurm_pipeline.sbatch " + in + " " + out);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out.substr(0, r.out.find_first_of(";\n"));
  }
  static std::string job_field(const std::string& job, const std::string& field) {
    auto r = test::run_command("scontrol show job " + job);
    const size_t p = r.out.find(field + "=");
    if (p == std::string::npos) return "";
    const size_t b = p + field.size() + 1;
    return r.out.substr(b, r.out.find_first_of(" \n", b) - b);
  }
  // Waits until the job has left the queue (or `limit` passed); returns its final JobState.
  static std::string wait_done(const std::string& job, std::chrono::seconds limit) {
    const auto t0 = std::chrono::steady_clock::now();
    std::string state;
    while (std::chrono::steady_clock::now() - t0 < limit) {
      state = job_field(job, "JobState");
      if (state != "PENDING" && state != "RUNNING" && state != "CONFIGURING" && state != "COMPLETING") return state;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return "still " + state;
  }
  std::string dir_, model_, config_;
};

TEST_F(SlurmBatch, JobCompletesAndResumesAfterScancelWithEveryIdOnce) {
  std::string in;
  for (int i = 0; i < 40; ++i) {
    std::vector<int64_t> ids;
    for (int k = 0; k < 3 + i % 7; ++k) ids.push_back(5 + (i * 37 + k * 11) % 280);
    ids.push_back(296);
    ids.push_back(297);
    in += json{{"id", "j" + std::to_string(i)}, {"ids", ids}, {"max_new_tokens", 60}, {"greedy", true}}.dump() + "\n";
  }
  const std::string input = dir_ + "/in.jsonl";
  std::ofstream(input) << in;
  const std::string ref = dir_ + "/ref.jsonl", out = dir_ + "/out.jsonl";
  auto r0 = test::run_command("timeout 300 " + test::glmpipe_bin() + " batch --model " + model_ +
                              " --threads 1 --max-batch 2 --input " + input + " --output " + ref);
  ASSERT_EQ(r0.exit_code, 0) << r0.err;
  int dups = 0;
  const IdMap want = read_output(ref, &dups);
  ASSERT_EQ(want.size(), 40u);

  // First job: cancelled once a few results are out.
  const std::string job1 = submit(input, out);
  ASSERT_FALSE(job1.empty());
  auto lines = [&] {
    std::string s = test::read_file(out);
    return std::count(s.begin(), s.end(), '\n');
  };
  const auto t0 = std::chrono::steady_clock::now();
  while (lines() < 3 && job_field(job1, "JobState") != "COMPLETED" &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(240))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_GE(lines(), 3) << "job " << job1 << " wrote nothing: " << test::read_file(dir_ + "/glmpipe-" + job1 + ".log");
  ASSERT_EQ(test::run_command("scancel " + job1).exit_code, 0);
  const std::string s1 = wait_done(job1, std::chrono::seconds(60));
  EXPECT_EQ(s1, "CANCELLED") << test::read_file(dir_ + "/glmpipe-" + job1 + ".log");
  // No process of the job survives the cancel (Slurm sends SIGTERM, then SIGKILL after KillWait = 5 s).
  auto survivors = [&] { return test::run_command("pgrep -f '[b]atch --config " + config_ + "'").exit_code == 0; };
  const auto tc = std::chrono::steady_clock::now();
  while (survivors() && std::chrono::steady_clock::now() - tc < std::chrono::seconds(20))
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(survivors()) << "a process of job " << job1 << " survived scancel by 20 s";
  IdMap partial = read_output(out, &dups);
  ASSERT_LT(partial.size(), 40u) << "the job finished before scancel; make it longer";
  EXPECT_EQ(dups, 0);

  // Second job: resumes and completes.
  const std::string job2 = submit(input, out);
  ASSERT_FALSE(job2.empty());
  const std::string s2 = wait_done(job2, std::chrono::seconds(300));
  const std::string log2 = test::read_file(dir_ + "/glmpipe-" + job2 + ".log");
  ASSERT_EQ(s2, "COMPLETED") << log2;
  EXPECT_EQ(job_field(job2, "ExitCode"), "0:0");
  EXPECT_NE(log2.find("already in"), std::string::npos) << "the second job did not resume:\n" << log2;
  EXPECT_NE(log2.find("stage 1/2:"), std::string::npos) << "no second pipeline stage:\n" << log2;
  const IdMap got = read_output(out, &dups);
  EXPECT_EQ(dups, 0) << "an id was written twice";
  EXPECT_EQ(got, want);
}

}  // namespace
