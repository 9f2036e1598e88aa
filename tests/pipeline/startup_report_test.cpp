// Start-up of a pipeline (launcher/startup_report.h): rank 0 prints one start-up summary once every
// rank has loaded its shard: the plan table, then one row per rank whose numbers were gathered
// from that rank over MPI. The rows are checked against what each rank logs about itself (its
// "memory:" line at exit) and against the model's tensor count; on a terminal (GLMPIPE_STDERR_TTY=1)
// rank 0 draws one progress line that reaches 100%.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "checkpoint/tiny_model.h"
#include "tests/test_util.h"

using namespace glmpipe;

namespace {

constexpr int kLayers = 6;

struct Row {
  double load_s = 0, loaded_mib = 0, planned_mib = 0, peak_mib = 0, growth_mib = 0, diff_pct = 0, budget_mib = 0,
         act_mib = 0;
  int64_t tensors = 0, threads = 0;
};

struct MemoryLine {
  int64_t peak = 0, weights = 0, kv = 0, act = 0, loaded = 0, load_peak = 0, start = 0, resident = 0, budget = 0;
};

class StartupReport : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("startup");
    TinyModelOptions o;
    o.layers = kLayers;
    o.hidden = 64;
    o.heads = 4;
    o.vocab = 300;
    o.seed = 3;
    make_tiny_model(dir_ + "/model", o);
    std::ofstream(dir_ + "/three.yaml") << "model: {path: " << dir_ << "/model, dtype: float32}\nranks:\n"
                                        << "  - {device: cpu, max_memory: 1GiB, threads: 1}\n"
                                        << "  - {device: cpu, max_memory: 1GiB, threads: 1}\n"
                                        << "  - {device: cpu, max_memory: 1GiB, threads: 1}\n"
                                        << "placement: balanced\nkv_cache: {max_batch: 1, max_seq_len: 64}\n"
                                        << "reserve: {cpu: 64MiB}\n";
  }
  test::RunResult generate(const std::string& env = "") {
    return test::run_command(env + " timeout 120 " + test::glmpipe_bin() + " generate --config " + dir_ +
                             "/three.yaml --ids 1,2,3,296,297 --max-new-tokens 3 --greedy --print-ids");
  }
  std::string dir_;
};

// The per-rank rows of the summary: rank device load_s tensors loaded planned rss_growth diff peak_rss
// max_memory activations threads.
std::map<int, Row> summary_rows(const std::string& summary) {
  std::map<int, Row> rows;
  std::regex row(R"(\s*(\d+) cpu\s+([\d.]+)\s+(\d+)\s+([\d.]+) MiB\s+([\d.]+) MiB\s+(-?[\d.]+) MiB\s+([+-][\d.]+)%\s+)"
                 R"(([\d.]+) MiB\s+([\d.]+) MiB\s+([\d.]+) MiB\s+(\d+))");
  std::istringstream in(summary);
  std::string line;
  std::smatch m;
  while (std::getline(in, line))
    if (std::regex_match(line, m, row)) {
      Row r;
      r.load_s = std::stod(m[2]);
      r.tensors = std::stoll(m[3]);
      r.loaded_mib = std::stod(m[4]);
      r.planned_mib = std::stod(m[5]);
      r.growth_mib = std::stod(m[6]);
      r.diff_pct = std::stod(m[7]);
      r.peak_mib = std::stod(m[8]);
      r.budget_mib = std::stod(m[9]);
      r.act_mib = std::stod(m[10]);
      r.threads = std::stoll(m[11]);
      rows[std::stoi(m[1])] = r;
    }
  return rows;
}

std::map<int, MemoryLine> memory_lines(const std::string& log) {
  std::map<int, MemoryLine> out;
  std::regex line(R"(\[r(\d)/3 s\d\] \[info\] memory: peak_rss (\d+) start_rss (\d+) planned_weights (\d+) planned_kv (\d+) )"
                  R"(planned_activations (\d+) loaded_weights (\d+) rank \d+ load_peak_rss (\d+) planned_resident (\d+) )"
                  R"(planned_disk_window \d+ budget (\d+))");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator(); ++it) {
    const auto& m = *it;
    MemoryLine l;
    l.peak = std::stoll(m[2]);
    l.start = std::stoll(m[3]);
    l.weights = std::stoll(m[4]);
    l.kv = std::stoll(m[5]);
    l.act = std::stoll(m[6]);
    l.loaded = std::stoll(m[7]);
    l.load_peak = std::stoll(m[8]);
    l.resident = std::stoll(m[9]);
    l.budget = std::stoll(m[10]);
    out[std::stoi(m[1])] = l;
  }
  return out;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

double mib(int64_t bytes) { return bytes / 1048576.0; }

TEST_F(StartupReport, SummaryListsEveryRankWithPlannedAndMeasuredMemory) {
  auto r = generate();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(count(r.err, "== start-up summary: 3 stages ready"), 1u) << r.err;
  const std::string summary = r.err.substr(r.err.find("== start-up summary"));
  EXPECT_NE(summary.find("transformer.word_embeddings"), std::string::npos) << "no plan table in the summary";
  EXPECT_EQ(r.err.find("\rloading weights"), std::string::npos) << "progress line drawn into a log";
  for (int rank = 1; rank < 3; ++rank)  // not a terminal: milestones are logged instead
    EXPECT_NE(r.err.find("rank " + std::to_string(rank) + " ready: "), std::string::npos) << r.err;
  auto rows = summary_rows(summary);
  auto mem = memory_lines(r.err);
  ASSERT_EQ(rows.size(), 3u) << summary;
  ASSERT_EQ(mem.size(), 3u) << r.err;
  int64_t tensors = 0;
  for (int rank = 0; rank < 3; ++rank) {
    const Row& row = rows[rank];
    const MemoryLine& m = mem[rank];
    SCOPED_TRACE("rank " + std::to_string(rank));
    tensors += row.tensors;
    EXPECT_GT(row.load_s, 0.0);
    EXPECT_GT(row.tensors, 0);
    EXPECT_EQ(row.threads, 1);
    // Each number came from that rank: same as what it logs about itself (to the 0.1 MiB printed).
    EXPECT_NEAR(row.loaded_mib, mib(m.loaded), 0.051);
    EXPECT_NEAR(row.planned_mib, mib(m.resident), 0.051);
    EXPECT_EQ(m.resident, m.weights + m.kv);  // no disk units here
    EXPECT_NEAR(row.act_mib, mib(m.act), 0.051);
    EXPECT_NEAR(row.budget_mib, mib(m.budget), 0.051);
    EXPECT_EQ(m.budget, int64_t{1} << 30);
    EXPECT_GT(row.peak_mib, 0.0);
    EXPECT_NEAR(row.peak_mib, mib(m.load_peak), 0.051);
    EXPECT_LE(row.peak_mib, mib(m.peak) + 0.051) << "start-up peak above the peak at exit";
    EXPECT_NEAR(row.growth_mib, mib(m.load_peak - m.start), 0.051);
    EXPECT_NEAR(row.diff_pct, 100.0 * (m.load_peak - m.start - m.resident) / m.resident, 0.051);
  }
  // Every tensor the shards need was read once: embedding + 12 per block + final LayerNorm (2) + a
  // separate lm_head on the last rank (which does not hold the embedding in this plan).
  EXPECT_EQ(tensors, 1 + 12 * kLayers + 2 + 1);
}

TEST_F(StartupReport, ProgressLineOnATerminal) {
  auto r = generate("GLMPIPE_STDERR_TTY=1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("\rloading weights ["), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("] 100%"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(" ready: "), std::string::npos) << "milestone lines on a terminal";
  EXPECT_EQ(count(r.err, "== start-up summary: 3 stages ready"), 1u);
}

}  // namespace
