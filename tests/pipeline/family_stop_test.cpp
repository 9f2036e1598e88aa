// The chat family's stop ids end generation end to end, in a 2-rank CPU pipeline (mpirun), through
// `generate --prompt`, `batch` and `chat`: tiny random ChatGLM3 and GLM-4 models (make-tiny-model
// --family, the real tokenizer's vocabulary) with the real tokenizer files of ../shared/data
// (skipped without them). A logit_bias of 100 makes one id the greedy choice at every step: a stop
// id ends generation after that one id (finish_reason "stop"), another special id runs to the
// token limit. ChatGLM3's config.json names only eos 2, so its 64795 <|user|> and 64797
// <|observation|> stops come from the chat family alone; GLM-4 stops on each of 151329, 151336,
// 151338.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "launcher/cli_util.h"
#include "tests/test_util.h"

using namespace glmpipe;
using json = nlohmann::json;

namespace {

constexpr int kMaxNew = 5;

struct Family {
  std::string name, tokenizer, make_args;
  std::vector<int64_t> stops, non_stops;
};

Family family(const std::string& f) {
  if (f == "glm4")
    return {f, test::shared_data() + "/tokenizers/glm-4-9b-tokenizer.model", "--family glm4 --vocab 151343",
            {151329, 151336, 151338}, {151337}};
  return {f, test::shared_data() + "/tokenizers/chatglm2-6b-tokenizer.model", "--family chatglm2 --vocab 65024",
          {2, 64795, 64797}, {64796}};
}

test::RunResult glmpipe(const std::string& args, const std::string& env = "") {
  return test::run_command(env + " timeout 300 " + test::glmpipe_bin() + " " + args);
}

class FamilyStops : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    f_ = family(GetParam());
    if (!test::file_exists(f_.tokenizer)) GTEST_SKIP() << "needs " << f_.tokenizer << " (../shared/data absent)";
    dir_ = test::make_temp_dir("stops_" + f_.name);
    model_ = dir_ + "/model";
    auto r = glmpipe("make-tiny-model " + model_ + " --layers 2 --hidden 32 --heads 2 --seed 9 " + f_.make_args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  void TearDown() override {
    if (!dir_.empty()) std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  // Two one-thread CPU ranks; greedy, at most kMaxNew tokens, `bias` on one id (-1: none).
  std::string config(int64_t bias) {
    const std::string path = dir_ + "/d" + std::to_string(bias) + ".yaml";
    std::ofstream(path) << "model: {path: " << model_ << ", dtype: float32}\n"
                        << "tokenizer: {path: " << f_.tokenizer << ", chat_family: " << f_.name << "}\n"
                        << "ranks:\n  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                        << "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                        << "placement: balanced\nkv_cache: {max_batch: 4, max_seq_len: 256}\nreserve: {cpu: 64MiB}\n"
                        << "generation: {temperature: 0, max_new_tokens: " << kMaxNew
                        << (bias >= 0 ? ", logit_bias: {\"" + std::to_string(bias) + "\": 100}" : std::string()) << "}\n";
    return path;
  }
  Family f_;
  std::string dir_, model_;
};

TEST_P(FamilyStops, GenerateWithPromptEndsOnEachStopId) {
  for (int64_t id : f_.stops) {
    auto r = glmpipe("generate --config " + config(id) + " --prompt 你好 --print-ids");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(parse_id_list(r.out.substr(0, r.out.find('\n')), "ids"), std::vector<int64_t>{id}) << r.out;
  }
  for (int64_t id : f_.non_stops) {
    auto r = glmpipe("generate --config " + config(id) + " --prompt 你好 --print-ids");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(parse_id_list(r.out.substr(0, r.out.find('\n')), "ids"), std::vector<int64_t>(kMaxNew, id)) << r.out;
  }
}

TEST_P(FamilyStops, BatchEndsOnEachStopId) {
  const std::string in = dir_ + "/in.jsonl", out = dir_ + "/out.jsonl";
  {
    std::ofstream f(in);
    for (int64_t id : f_.stops) {
      f << json{{"id", "p" + std::to_string(id)}, {"prompt", "你好"}, {"logit_bias", {{std::to_string(id), 100}}}}.dump() << "\n";
      f << json{{"id", "m" + std::to_string(id)}, {"messages", {{{"role", "user"}, {"content", "你好"}}}},
                {"logit_bias", {{std::to_string(id), 100}}}}.dump() << "\n";
    }
    for (int64_t id : f_.non_stops)
      f << json{{"id", "n" + std::to_string(id)}, {"prompt", "你好"}, {"logit_bias", {{std::to_string(id), 100}}}}.dump() << "\n";
  }
  auto r = glmpipe("batch --config " + config(-1) + " --input " + in + " --output " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, json> got;
  std::istringstream lines(test::read_file(out));
  for (std::string line; std::getline(lines, line);)
    if (!line.empty()) {
      json j = json::parse(line);
      got[j["id"].get<std::string>()] = j;
    }
  ASSERT_EQ(got.size(), 2 * f_.stops.size() + f_.non_stops.size()) << test::read_file(out) << r.err;
  for (int64_t id : f_.stops)
    for (const char* kind : {"p", "m"}) {
      const json& j = got[kind + std::to_string(id)];
      EXPECT_EQ(j["finish_reason"], "stop") << j;
      EXPECT_EQ(j["ids"], json::array({id})) << j;
      EXPECT_EQ(j["text"], "") << j;
    }
  for (int64_t id : f_.non_stops) {
    const json& j = got["n" + std::to_string(id)];
    EXPECT_EQ(j["finish_reason"], "length") << j;
    EXPECT_EQ(j["generated_tokens"], kMaxNew) << j;
  }
}

TEST_P(FamilyStops, ChatEndsOnEachStopId) {
  std::vector<int64_t> ids = f_.stops;
  ids.insert(ids.end(), f_.non_stops.begin(), f_.non_stops.end());
  for (int64_t id : ids) {
    const bool stop = std::find(f_.stops.begin(), f_.stops.end(), id) != f_.stops.end();
    auto r = glmpipe("chat --config " + config(id), "printf '你好\\n/exit\\n' | GLMPIPE_LOG_LEVEL=debug");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string want = stop ? "answer of 0 tokens, finish_reason stop"
                                  : "answer of " + std::to_string(kMaxNew) + " tokens, finish_reason length";
    EXPECT_NE(r.err.find(want), std::string::npos) << id << ": " << r.err;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyStops, ::testing::Values("chatglm3", "glm4"));

}  // namespace
