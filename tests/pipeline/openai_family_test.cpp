// `glmpipe serve` with the family chat formats, over real HTTP on 127.0.0.1: tiny random GLM-4 and
// ChatGLM3 models (make-tiny-model --family, the vocabulary of the real tokenizer) served with the
// real tokenizer files of ../shared/data (skipped without them).
//  - The chat prompt the server builds (tools, system, a replayed call) is the one `glmpipe
//    tokenize --chat` prints for the same JSON: the chat completion's prompt_tokens and its greedy
//    tokens' logprobs equal those of /v1/completions given those ids (a random model's logprobs
//    depend on every prompt id; the same request without tools gives other numbers).
//  - Generation stops on each of the family's stop ids (GLM-4: 151329, 151336, 151338; ChatGLM3:
//    2, 64795, 64797), forced with logit_bias, and not on another special id.
//  - tool_choice other than "auto"/"none" is refused with a 400 naming it; a streamed chat with
//    tools gives the same content and finish_reason as the non-streamed one.
// The tool_calls answer itself is shown by tests/unit/openai_tools_test.cpp (a random model does
// not write a call).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "launcher/cli_util.h"
#include "tests/http_client.h"
#include "tests/test_util.h"

using namespace glmpipe;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;
using test::HttpReply;

namespace {

std::string tok_path(const std::string& family) {
  return test::shared_data() + (family == "glm4" ? "/tokenizers/glm-4-9b-tokenizer.model"
                                                 : "/tokenizers/chatglm2-6b-tokenizer.model");
}

const char* kToolChat = R"({"messages": [
    {"role": "system", "content": "你是一个乐于助人的助手。"},
    {"role": "user", "content": "北京天气怎么样？"},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
      "function": {"name": "get_weather", "arguments": "{\"city\": \"北京\"}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "{\"weather\": \"晴\", \"temperature\": 21}"},
    {"role": "user", "content": "上海呢？"}],
  "tools": [{"type": "function", "function": {"name": "get_weather", "description": "查询城市的天气",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "城市"}},
                   "required": ["city"]}}}]})";

// One served tiny model of a chat family.
struct Served {
  std::string family, dir, model;
  std::vector<int64_t> stops, non_stop;  // the family's stop ids; specials that are not
  test::ServeProcess* server = nullptr;
};

class OpenAIFamily : public ::testing::TestWithParam<std::string> {
 protected:
  static Served* start(const std::string& family) {
    auto* s = new Served;
    s->family = family;
    s->dir = test::make_temp_dir("openai_" + family);
    s->model = s->dir + "/model";
    const bool glm4 = family == "glm4";
    // The vocabulary of the real tokenizer: GLM-4 151329 ranks + 14 specials; ChatGLM3 65024 rows.
    const std::string mk = "make-tiny-model " + s->model + " --layers 2 --hidden 32 --heads 2 --seed 3 " +
                           (glm4 ? "--family glm4 --vocab 151343" : "--family chatglm2 --vocab 65024");
    auto r = test::run_command("timeout 120 " + test::glmpipe_bin() + " " + mk);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    s->stops = glm4 ? std::vector<int64_t>{151329, 151336, 151338} : std::vector<int64_t>{2, 64795, 64797};
    s->non_stop = glm4 ? std::vector<int64_t>{151337, 151335} : std::vector<int64_t>{64796, 64794};
    s->server = new test::ServeProcess(s->dir, "--model " + s->model + " --tokenizer " + tok_path(family) +
                                                   " --chat-family " + family +
                                                   " --threads 1 --max-batch 2 --max-seq 1024");
    return s;
  }
  static void SetUpTestSuite() {
    for (const char* f : {"glm4", "chatglm3"})
      if (test::file_exists(tok_path(f))) served()[f] = start(f);
  }
  static void TearDownTestSuite() {
    for (auto& [f, s] : served()) {
      delete s->server;
      std::system(("rm -rf '" + s->dir + "'").c_str());  // the tiny models are tens of MB (real vocabularies)
      delete s;
    }
    served().clear();
  }
  static std::map<std::string, Served*>& served() {
    static std::map<std::string, Served*> m;
    return m;
  }
  void SetUp() override {
    if (!served().count(GetParam())) GTEST_SKIP() << "needs " << tok_path(GetParam()) << " (../shared/data absent)";
    s_ = served()[GetParam()];
    ASSERT_TRUE(s_->server->wait_healthy(120)) << s_->server->log();
  }
  HttpReply chat(ojson body) { return s_->server->post("/v1/chat/completions", body.dump()); }
  Served* s_ = nullptr;
};

// The ids `glmpipe tokenize --chat` prints for `body`.
std::vector<int64_t> tokenize_chat(const Served& s, const std::string& body) {
  const std::string f = s.dir + "/chat.json";
  std::ofstream(f) << body;
  auto r = test::run_command(test::glmpipe_bin() + " tokenize --tokenizer " + tok_path(s.family) + " --family " +
                             s.family + " --chat " + f);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return parse_id_list(r.out.substr(0, r.out.find('\n')), "tokenize --chat");
}

// The greedy tokens' (id text, logprob) of a response's choice 0.
std::vector<std::pair<std::string, double>> chat_logprobs(const json& j) {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& e : j["choices"][0]["logprobs"]["content"]) out.emplace_back(e["token"], e["logprob"]);
  return out;
}
std::vector<std::pair<std::string, double>> completion_logprobs(const json& j) {
  std::vector<std::pair<std::string, double>> out;
  const json& lp = j["choices"][0]["logprobs"];
  for (size_t i = 0; i < lp["tokens"].size(); ++i) out.emplace_back(lp["tokens"][i], lp["token_logprobs"][i]);
  return out;
}

void expect_same(const std::vector<std::pair<std::string, double>>& a,
                 const std::vector<std::pair<std::string, double>>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first) << what << " token " << i;
    EXPECT_NEAR(a[i].second, b[i].second, 1e-9) << what << " token " << i;
  }
}

TEST_P(OpenAIFamily, ChatPromptIsTheOneTokenizeChatPrints) {
  const std::vector<int64_t> ids = tokenize_chat(*s_, kToolChat);
  ASSERT_GT(ids.size(), 50u);
  ojson req = ojson::parse(kToolChat);
  req["max_tokens"] = 4;
  req["temperature"] = 0;
  req["logprobs"] = true;
  auto c = chat(req);
  ASSERT_EQ(c.code, 200) << c.body;
  const json cj = c.json();
  EXPECT_EQ(cj["usage"]["prompt_tokens"], ids.size()) << c.body;
  ojson creq = {{"prompt", ids}, {"max_tokens", 4}, {"temperature", 0}, {"logprobs", 0}};
  auto p = s_->server->post("/v1/completions", creq.dump());
  ASSERT_EQ(p.code, 200) << p.body;
  ASSERT_EQ(completion_logprobs(p.json()).size(), 4u) << p.body;
  expect_same(chat_logprobs(cj), completion_logprobs(p.json()), "chat vs completions of the tokenize --chat ids");
  // The fingerprint tells prompts apart: without the tools (tool_choice "none") the numbers differ.
  req["tool_choice"] = "none";
  auto n = chat(req);
  ASSERT_EQ(n.code, 200) << n.body;
  EXPECT_LT(n.json()["usage"]["prompt_tokens"].get<size_t>(), ids.size());
  EXPECT_NE(chat_logprobs(n.json())[0].second, chat_logprobs(cj)[0].second);
}

TEST_P(OpenAIFamily, GenerationEndsOnEachStopId) {
  for (int64_t id : s_->stops)
    for (bool stream : {false, true}) {
      ojson req = {{"messages", {{{"role", "user"}, {"content", "你好"}}}},
                   {"max_tokens", 6}, {"temperature", 0}, {"stream", stream},
                   {"logit_bias", {{std::to_string(id), 100}}}};
      if (stream) req["stream_options"] = {{"include_usage", true}};
      auto h = chat(req);
      ASSERT_EQ(h.code, 200) << h.body;
      json usage, last;
      std::string content;
      if (stream) {
        bool done = false;
        auto events = test::sse_events(h.body, &done);
        ASSERT_TRUE(done) << h.body;
        usage = events.back()["usage"];
        last = events[events.size() - 2]["choices"][0];
        for (const auto& e : events)
          for (const auto& ch : e["choices"])
            if (ch["delta"].contains("content")) content += ch["delta"]["content"].get<std::string>();
      } else {
        usage = h.json()["usage"];
        last = h.json()["choices"][0];
        content = last["message"]["content"];
      }
      EXPECT_EQ(last["finish_reason"], "stop") << id << " " << h.body;
      EXPECT_EQ(usage["completion_tokens"], 1) << id << " " << h.body;  // the stop id itself
      EXPECT_EQ(content, "") << id;
    }
  // Another special id does not end generation.
  for (int64_t id : s_->non_stop) {
    auto h = chat({{"messages", {{{"role", "user"}, {"content", "你好"}}}},
                   {"max_tokens", 6}, {"temperature", 0}, {"logit_bias", {{std::to_string(id), 100}}}});
    ASSERT_EQ(h.code, 200) << h.body;
    EXPECT_EQ(h.json()["choices"][0]["finish_reason"], "length") << id << " " << h.body;
    EXPECT_EQ(h.json()["usage"]["completion_tokens"], 6) << id;
  }
}

TEST_P(OpenAIFamily, ToolChoiceRefusedOrHonoured) {
  for (const char* choice : {R"("required")", R"({"type": "function", "function": {"name": "get_weather"}})"}) {
    ojson req = ojson::parse(kToolChat);
    req["tool_choice"] = ojson::parse(choice);
    auto h = chat(req);
    EXPECT_EQ(h.code, 400) << h.body;
    EXPECT_EQ(h.json()["error"]["param"], "tool_choice") << h.body;
  }
  // Streamed with tools: held back until the reply is known, then the same content as unstreamed.
  ojson req = ojson::parse(kToolChat);
  req["max_tokens"] = 8;
  req["temperature"] = 0;
  auto plain = chat(req);
  ASSERT_EQ(plain.code, 200) << plain.body;
  req["stream"] = true;
  auto s = chat(req);
  ASSERT_EQ(s.code, 200) << s.body;
  bool done = false;
  auto events = test::sse_events(s.body, &done);
  ASSERT_TRUE(done) << s.body;
  std::string content;
  for (const auto& e : events)
    for (const auto& ch : e["choices"])
      if (ch["delta"].contains("content")) content += ch["delta"]["content"].get<std::string>();
  const json pj = plain.json();
  const json& pc = pj["choices"][0];
  EXPECT_EQ(events.back()["choices"][0]["finish_reason"], pc["finish_reason"]) << s.body;
  if (pc["message"]["content"].is_string()) EXPECT_EQ(content, pc["message"]["content"]) << s.body;
}

INSTANTIATE_TEST_SUITE_P(Families, OpenAIFamily, ::testing::Values("glm4", "chatglm3"));

}  // namespace
