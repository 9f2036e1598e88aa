// `glmpipe batch` end to end: greedy results equal `glmpipe generate` run alone (single process and
// 2-rank pipeline), malformed lines are reported with their line numbers without stopping the job,
// and a kill -9 mid-job resumes to exactly the uninterrupted output (no loss, no duplicates).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "checkpoint/tiny_model.h"
#include "tests/test_util.h"

using namespace glmpipe;
using json = nlohmann::json;

namespace {

std::string write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

// Every line of a JSONL file, parsed; a line that is not JSON fails the test.
std::vector<json> read_jsonl(const std::string& path) {
  std::vector<json> out;
  std::istringstream in(test::read_file(path));
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    json j = json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << path << ":" << n << " is not JSON: " << line;
    if (!j.is_discarded()) out.push_back(j);
  }
  return out;
}

using IdMap = std::map<std::string, std::vector<int64_t>>;

// id -> generated ids; a duplicate id fails the test.
IdMap by_id(const std::vector<json>& rows) {
  IdMap m;
  for (const auto& j : rows) {
    EXPECT_TRUE(j.contains("id") && j.contains("ids") && j.contains("finish_reason") && j.contains("prompt_tokens"))
        << j.dump();
    const std::string id = j["id"].get<std::string>();
    EXPECT_EQ(m.count(id), 0u) << "duplicate id " << id;
    m[id] = j["ids"].get<std::vector<int64_t>>();
  }
  return m;
}

std::string ids_csv(const std::vector<int64_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

class BatchCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = test::make_temp_dir("batch");
    TinyModelOptions o;
    o.layers = 4;
    o.hidden = 64;
    o.heads = 4;
    o.vocab = 300;
    o.seed = 5;
    model_ = dir_ + "/model";
    make_tiny_model(model_, o);
    config_ = write_file(dir_ + "/two.yaml",
                         "model: {path: unused, dtype: float32}\nranks:\n"
                         "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                         "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                         "placement: balanced\nkv_cache: {max_batch: 4, max_seq_len: 512}\nreserve: {cpu: 64MiB}\n");
  }
  static test::RunResult glmpipe(const std::string& args) {
    return test::run_command("timeout 120 " + test::glmpipe_bin() + " " + args);
  }
  // A prompt of `len` ids ending in [gMASK] <sop> (296, 297 for vocab 300).
  static std::vector<int64_t> prompt(int len, int salt) {
    std::vector<int64_t> ids;
    for (int i = 0; i < len - 2; ++i) ids.push_back(5 + (salt * 37 + i * 11) % 280);
    ids.push_back(296);
    ids.push_back(297);
    return ids;
  }
  static inline std::string dir_, model_, config_;
};

TEST_F(BatchCli, GreedyResultsEqualGenerateAloneAndPipeline) {
  std::string in;
  std::vector<std::pair<std::vector<int64_t>, int>> reqs;
  for (int i = 0; i < 12; ++i) {
    auto ids = prompt(3 + (i * 5) % 17, i);
    const int n = 3 + (i * 7) % 13;
    reqs.emplace_back(ids, n);
    in += json{{"id", "r" + std::to_string(i)}, {"ids", ids}, {"max_new_tokens", n}, {"greedy", true}}.dump() + "\n";
  }
  const std::string input = write_file(dir_ + "/t1.jsonl", in);
  const std::string out1 = dir_ + "/t1_single.jsonl", out2 = dir_ + "/t1_pipe.jsonl";
  auto r1 = glmpipe("batch --model " + model_ + " --threads 1 --max-batch 3 --input " + input + " --output " + out1);
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  EXPECT_NE(r1.err.find("batch: 12 requests"), std::string::npos) << "no summary line:\n" << r1.err;
  auto single = by_id(read_jsonl(out1));
  ASSERT_EQ(single.size(), 12u);
  for (int i = 0; i < 12; ++i) {
    const auto& got = single["r" + std::to_string(i)];
    ASSERT_FALSE(got.empty()) << i;
    EXPECT_LE(got.size(), static_cast<size_t>(reqs[i].second)) << i;
  }
  for (int i : {0, 5, 11}) {  // spot checks against the request run alone
    auto g = glmpipe("generate --model " + model_ + " --threads 1 --ids " + ids_csv(reqs[i].first) +
                     " --greedy --max-new-tokens " + std::to_string(reqs[i].second) + " --print-ids");
    ASSERT_EQ(g.exit_code, 0) << g.err;
    EXPECT_EQ(ids_csv(single["r" + std::to_string(i)]) + "\n", g.out) << "request " << i;
  }
  auto r2 = glmpipe("batch --config " + config_ + " --model " + model_ + " --input " + input + " --output " + out2);
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  EXPECT_EQ(by_id(read_jsonl(out2)), single);
}

// Issue #7: every sequence of a batched greedy run through a 3-rank pipeline equals that sequence
// generated alone in one process. Prompts of different lengths, more requests than KV slots
// (continuous batching: sequences join and leave while others decode), M > 1 micro-batches of
// ragged rows, under two slot/M settings.
TEST_F(BatchCli, ThreeRankMicroBatchedGreedyEqualsEachSequenceAlone) {
  const std::string three = write_file(dir_ + "/three.yaml",
                                       "model: {path: unused, dtype: float32}\nranks:\n"
                                       "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                                       "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                                       "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                                       "placement: balanced\nkv_cache: {max_batch: 4, max_seq_len: 512}\nreserve: {cpu: 64MiB}\n");
  std::string in;
  IdMap alone;
  std::set<size_t> lengths;
  for (int i = 0; i < 10; ++i) {
    auto ids = prompt(3 + (i * 7) % 23, 50 + i);
    lengths.insert(ids.size());
    const int n = 4 + (i * 5) % 11;
    in += json{{"id", "s" + std::to_string(i)}, {"ids", ids}, {"max_new_tokens", n}, {"greedy", true}}.dump() + "\n";
    auto g = glmpipe("generate --model " + model_ + " --threads 1 --max-batch 1 --ids " + ids_csv(ids) +
                     " --greedy --max-new-tokens " + std::to_string(n) + " --print-ids");
    ASSERT_EQ(g.exit_code, 0) << g.err;
    ASSERT_FALSE(g.out.empty()) << "request " << i;
    std::vector<int64_t> toks;
    std::istringstream ss(g.out);
    for (std::string t; std::getline(ss, t, ',');) toks.push_back(std::stoll(t));
    alone["s" + std::to_string(i)] = toks;
  }
  ASSERT_GE(lengths.size(), 6u) << "prompts of different lengths";
  const std::string input = write_file(dir_ + "/t5.jsonl", in);
  // (KV slots, micro-batches): 10 requests through 4 or 3 slots, 2 or 3 micro-batches in flight.
  for (auto [slots, m] : {std::pair<int, int>{4, 2}, {3, 3}}) {
    const std::string out = dir_ + "/t5_" + std::to_string(m) + ".jsonl";
    auto r = glmpipe("batch --config " + three + " --model " + model_ + " --max-batch " + std::to_string(slots) +
                     " --micro-batches " + std::to_string(m) + " --input " + input + " --output " + out +
                     (m == 2 ? " --timings" : ""));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("-np 3"), std::string::npos) << "not a 3-rank launch:\n" << r.err;
    for (int s = 0; s < 3; ++s)  // every stage ran micro-batches
      EXPECT_NE(r.err.find("stage " + std::to_string(s) + "/3:"), std::string::npos) << r.err;
    const auto rows = read_jsonl(out);
    EXPECT_EQ(by_id(rows), alone) << "slots " << slots << ", M " << m;
    for (const auto& j : rows) {  // --timings: one increasing timestamp per generated token
      if (m != 2) {
        EXPECT_FALSE(j.contains("token_ms")) << j.dump();
        continue;
      }
      ASSERT_TRUE(j.contains("token_ms")) << j.dump();
      const auto t = j["token_ms"].get<std::vector<double>>();
      ASSERT_EQ(t.size(), j["ids"].size()) << j.dump();
      EXPECT_GT(t[0], 0.0);
      for (size_t k = 1; k < t.size(); ++k) EXPECT_GE(t[k], t[k - 1]) << j.dump();
    }
  }
}

TEST_F(BatchCli, MalformedLinesAreReportedAndTheJobContinues) {
  const std::string input = write_file(dir_ + "/t2.jsonl",
                                       "{\"id\": \"ok1\", \"ids\": [5, 6, 296, 297], \"max_new_tokens\": 3, \"greedy\": true}\n"
                                       "{\"id\": \"bad-json\", \"ids\": [5, 6\n"
                                       "\n"
                                       "{\"id\": \"oov\", \"ids\": [5, 300, 296, 297], \"greedy\": true}\n"
                                       "{\"ids\": [5, 6, 296, 297]}\n"
                                       "{\"id\": \"ok1\", \"ids\": [7, 296, 297]}\n"
                                       "{\"id\": \"types\", \"ids\": [5, 6], \"max_new_tokens\": \"many\"}\n"
                                       "{\"id\": \"text\", \"prompt\": \"hello\"}\n"
                                       "{\"id\": \"long\", \"ids\": [" + ids_csv(prompt(40, 1)) + "]}\n"
                                       "{\"id\": \"ok2\", \"ids\": [9, 296, 297], \"max_new_tokens\": 4, \"greedy\": true}\n");
  const std::string out = dir_ + "/t2_out.jsonl";
  // --max-seq 32: the 40-token prompt is rejected by the scheduler (an error event, not a parse error)
  auto r = glmpipe("batch --model " + model_ + " --threads 1 --max-seq 32 --input " + input + " --output " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ok = by_id(read_jsonl(out));
  EXPECT_EQ(ok.size(), 2u);
  EXPECT_TRUE(ok.count("ok1") && ok.count("ok2"));
  auto errs = read_jsonl(dir_ + "/t2_out.errors.jsonl");
  std::map<int64_t, std::string> by_line;
  for (const auto& e : errs) by_line[e.at("line").get<int64_t>()] = e.at("error").get<std::string>();
  EXPECT_EQ(by_line.size(), 7u) << r.err;
  for (int line : {2, 4, 5, 6, 7, 8, 9}) {
    EXPECT_TRUE(by_line.count(line)) << "line " << line << " not in the errors file\n" << r.err;
    EXPECT_NE(r.err.find("t2.jsonl:" + std::to_string(line) + ":"), std::string::npos) << "line " << line << "\n" << r.err;
  }
  EXPECT_NE(by_line[2].find("JSON"), std::string::npos) << by_line[2];
  EXPECT_NE(by_line[4].find("vocabulary"), std::string::npos) << by_line[4];
  EXPECT_NE(by_line[6].find("duplicate"), std::string::npos) << by_line[6];
  EXPECT_NE(by_line[9].find("KV cache"), std::string::npos) << by_line[9];
  for (const auto& e : errs) {
    if (e.at("line") == 4) EXPECT_EQ(e.at("id"), "oov");
  }

  // Re-running is a no-op: nothing re-generated, no error recorded twice.
  auto again = glmpipe("batch --model " + model_ + " --threads 1 --max-seq 32 --input " + input + " --output " + out);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(read_jsonl(out).size(), 2u);
  EXPECT_EQ(read_jsonl(dir_ + "/t2_out.errors.jsonl").size(), 7u);

  // Fatal: an unreadable input exits non-zero.
  auto missing = glmpipe("batch --model " + model_ + " --input " + dir_ + "/nope.jsonl --output " + dir_ + "/x.jsonl");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("nope.jsonl"), std::string::npos) << missing.err;
}

TEST_F(BatchCli, KillNineThenResumeEqualsUninterruptedRun) {
  std::string in;
  for (int i = 0; i < 40; ++i)
    in += json{{"id", "k" + std::to_string(i)}, {"ids", prompt(4 + i % 9, 100 + i)}, {"max_new_tokens", 60}, {"greedy", true}}
              .dump() +
          "\n";
  const std::string input = write_file(dir_ + "/t3.jsonl", in);
  const std::string args = " batch --model " + model_ + " --threads 1 --max-batch 2 --input " + input + " --output ";
  const std::string ref = dir_ + "/t3_ref.jsonl", out = dir_ + "/t3_out.jsonl";
  auto r0 = glmpipe(args.substr(1) + ref);
  ASSERT_EQ(r0.exit_code, 0) << r0.err;
  const IdMap want = by_id(read_jsonl(ref));
  ASSERT_EQ(want.size(), 40u);

  const std::string pidfile = dir_ + "/t3.pid", rcfile = dir_ + "/t3.rc";
  const std::string cmd = "( sh -c 'echo $$ > " + pidfile + "; exec " + test::glmpipe_bin() + args +
                          out + "' > " + dir_ + "/t3.log 2>&1; echo $? > " + rcfile + " ) &";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  auto lines = [&] {
    std::string s = test::read_file(out);
    return std::count(s.begin(), s.end(), '\n');
  };
  auto t0 = std::chrono::steady_clock::now();
  while (lines() < 3 && !test::file_exists(rcfile) && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  int pid = 0;
  std::ifstream(pidfile) >> pid;
  ASSERT_GT(pid, 0);
  std::system(("kill -9 " + std::to_string(pid) + " 2>/dev/null").c_str());
  while (!test::file_exists(rcfile) && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(test::file_exists(rcfile));
  const auto after_kill = read_jsonl(out);
  ASSERT_GE(after_kill.size(), 3u);
  ASSERT_LT(after_kill.size(), 40u) << "the job finished before the kill; make it longer";
  // A kill in the middle of a write would leave a partial line: simulate one.
  std::ofstream(out, std::ios::app) << "{\"id\": \"k39\", \"ids\": [1, 2";

  auto r = glmpipe(args.substr(1) + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("already in"), std::string::npos) << r.err;
  const auto rows = read_jsonl(out);
  EXPECT_EQ(rows.size(), 40u);
  EXPECT_EQ(by_id(rows), want);
}

TEST_F(BatchCli, TextPromptsChatHistoryAndMessagesWithTokenizer) {
  // The test tokenizer's ids go up to ~600: a second tiny model with a larger vocabulary.
  const std::string model = dir_ + "/model640";
  TinyModelOptions o;
  o.layers = 2;
  o.vocab = 640;
  o.seed = 1;  // a seed whose greedy continuations differ between the two prompts below
  make_tiny_model(model, o);
  const std::string tok = test::source_dir() + "/tests/data/tiny_chatglm.model";
  // The model's config.json names the test tokenizer's [gMASK] (5) and <sop> (8), as a real
  // checkpoint names its own tokenizer's: text prompts are checked against them (the official rule).
  {
    auto cfg = json::parse(test::read_file(model + "/config.json"));
    cfg["gmask_token_id"] = 5;
    cfg["bos_token_id"] = 8;
    write_file(model + "/config.json", cfg.dump(2));
  }
  auto enc = glmpipe("tokenize --tokenizer " + tok + " --text 'The model'");
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  const std::string ids = enc.out.substr(0, enc.out.find('\n'));
  const std::string input = write_file(
      dir_ + "/t4.jsonl",
      "{\"id\": \"p\", \"prompt\": \"The model\", \"max_new_tokens\": 5, \"greedy\": true}\n"
      "{\"id\": \"i\", \"ids\": [" + ids + "], \"max_new_tokens\": 5, \"greedy\": true}\n"
      "{\"id\": \"h\", \"history\": [[\"hi\", \"ok\"]], \"prompt\": \"yo\", \"max_new_tokens\": 5, \"greedy\": true}\n"
      "{\"id\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", "
      "\"content\": \"ok\"}, {\"role\": \"user\", \"content\": \"yo\"}], \"max_new_tokens\": 5, \"greedy\": true}\n"
      "{\"id\": \"bad\", \"messages\": [{\"role\": \"assistant\", \"content\": \"x\"}]}\n");
  const std::string out = dir_ + "/t4_out.jsonl";
  auto r = glmpipe("batch --model " + model + " --threads 1 --tokenizer " + tok + " --input " + input + " --output " +
                   out + " --errors " + dir_ + "/t4_err.jsonl");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, json> rows;
  for (const auto& j : read_jsonl(out)) rows[j["id"].get<std::string>()] = j;
  ASSERT_EQ(rows.size(), 4u) << r.err;
  for (const auto& [id, j] : rows) EXPECT_TRUE(j.contains("text") && j["text"].is_string()) << j.dump();
  EXPECT_EQ(rows["p"]["ids"], rows["i"]["ids"]);  // "prompt" == its tokenization given as "ids"
  EXPECT_EQ(rows["p"]["prompt_tokens"], rows["i"]["prompt_tokens"]);
  EXPECT_EQ(rows["h"]["ids"], rows["m"]["ids"]);  // messages == the same history + prompt
  EXPECT_EQ(rows["h"]["prompt_tokens"], rows["m"]["prompt_tokens"]);
  EXPECT_NE(rows["p"]["prompt_tokens"], rows["h"]["prompt_tokens"]);
  // "text" is the decoded continuation (plus the chat post-processing, a no-op for plain ASCII words).
  std::string gen;
  for (const auto& t : rows["p"]["ids"]) gen += (gen.empty() ? "" : ",") + std::to_string(t.get<int64_t>());
  auto dec = glmpipe("tokenize --tokenizer " + tok + " --decode " + gen);
  ASSERT_EQ(dec.exit_code, 0) << dec.err;
  std::string want = dec.out.substr(0, dec.out.find_last_not_of(" \n") + 1);
  want = want.substr(want.find_first_not_of(' ') == std::string::npos ? want.size() : want.find_first_not_of(' '));
  EXPECT_EQ(rows["p"]["text"].get<std::string>(), want);
  auto errs = read_jsonl(dir_ + "/t4_err.jsonl");
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0]["line"], 5);
}

}  // namespace
