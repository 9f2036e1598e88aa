// The OpenAI-compatible API of `glmpipe serve`, field by field, over real HTTP on 127.0.0.1, with
// the demo model (models/demo: greedy decoding recites the paragraph a prompt starts, so the
// continuation is known text). Numbers are checked against `glmpipe forward` logits: logprobs are
// the log-softmax of the distribution sampled from, penalties follow OpenAI's formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <nlohmann/json.hpp>

#include "common/npy.h"
#include "common/sampling_params.h"
#include "launcher/cli_util.h"
#include "model/tokenizer.h"
#include "tests/http_client.h"
#include "tests/test_util.h"

using namespace glmpipe;
using json = nlohmann::json;
using test::HttpReply;

namespace {

const char* kPrompt = "It is a truth universally acknowledged,";

std::string demo_dir() { return test::source_dir() + "/models/demo"; }

std::vector<int64_t> demo_ids(const std::string& text) {
  auto tok = ChatGLMTokenizer::load(demo_dir() + "/ice_text.model");
  std::vector<int64_t> ids;
  for (int id : tok.encode(text)) ids.push_back(id);
  return ids;
}

// [len(ids), vocab] logits from `glmpipe forward` (prefill the prompt, then one token at a time).
at::Tensor forward_logits(const std::vector<int64_t>& ids, size_t prefill, const std::string& dir) {
  const std::string out = dir + "/fwd.npy";
  auto r = test::run_command(test::glmpipe_bin() + " forward --model " + demo_dir() + " --threads 1 --ids " +
                             join_ids(ids) + " --prefill " + std::to_string(prefill) + " --out " + out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return load_npy(out).to(at::kDouble);
}

std::vector<int64_t> generate_ids(const std::vector<int64_t>& prompt, const std::string& flags) {
  auto r = test::run_command(test::glmpipe_bin() + " generate --model " + demo_dir() + " --threads 1 --ids " +
                             join_ids(prompt) + " --print-ids " + flags);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return parse_id_list(r.out.substr(0, r.out.find('\n')), "generated ids");
}

void expect_error(const HttpReply& h, const std::string& param, const std::string& what) {
  EXPECT_EQ(h.code, 400) << what << ": " << h.body;
  json j = h.json();
  ASSERT_TRUE(j.is_object() && j.contains("error")) << what << ": " << h.body;
  EXPECT_TRUE(j["error"]["message"].is_string()) << what;
  EXPECT_EQ(j["error"]["type"], "invalid_request_error") << what;
  EXPECT_EQ(j["error"]["param"], param) << what << ": " << h.body;
}

std::string stream_text(const std::vector<json>& events, int64_t index, bool chat) {
  std::string s;
  for (const auto& e : events)
    for (const auto& c : e["choices"])
      if (c["index"] == index) {
        if (chat && c["delta"].contains("content")) s += c["delta"]["content"].get<std::string>();
        if (!chat) s += c["text"].get<std::string>();
      }
  return s;
}

std::string strip(const std::string& s) {
  const auto a = s.find_first_not_of(" \t\n\r");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\n\r") - a + 1);
}

class OpenAI : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(test::make_temp_dir("openai"));
    server_ = new test::ServeProcess(*dir_, "--model " + demo_dir() + " --threads 1 --max-batch 4 --max-seq 256 "
                                            "--served-model-name demo --served-model-name pride");
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(server_->wait_healthy(90)) << server_->log(); }
  static HttpReply complete(json body) {
    if (!body.contains("prompt")) body["prompt"] = kPrompt;
    return server_->post("/v1/completions", body);
  }
  static HttpReply chat(json body) {
    if (!body.contains("messages")) body["messages"] = json::array({{{"role", "user"}, {"content", kPrompt}}});
    return server_->post("/v1/chat/completions", body);
  }
  static std::string* dir_;
  static test::ServeProcess* server_;
};
std::string* OpenAI::dir_ = nullptr;
test::ServeProcess* OpenAI::server_ = nullptr;

TEST_F(OpenAI, ServedModelNamesAreListedAndAccepted) {
  json models = server_->get("/v1/models").json();
  ASSERT_EQ(models["data"].size(), 2u) << models;
  EXPECT_EQ(models["data"][0]["id"], "demo");
  EXPECT_EQ(models["data"][1]["id"], "pride");
  auto h = complete({{"model", "pride"}, {"max_tokens", 3}, {"temperature", 0}});
  ASSERT_EQ(h.code, 200) << h.body;
  EXPECT_EQ(h.json()["model"], "pride");
  EXPECT_EQ(complete({{"model", "demo-x"}, {"max_tokens", 3}}).code, 404);
}

// The greedy continuation of the paragraph's start is the rest of the paragraph; a stop string
// taken from the middle of it cuts the text exactly before its first occurrence.
TEST_F(OpenAI, StopStringCutsExactlyBeforeIt) {
  auto plain = complete({{"max_tokens", 40}, {"temperature", 0}});
  ASSERT_EQ(plain.code, 200) << plain.body;
  const std::string full = plain.json()["choices"][0]["text"];
  const size_t at = full.find(" in possession");
  ASSERT_NE(at, std::string::npos) << "the demo model did not recite its paragraph: " << full;
  const std::string want = full.substr(0, at);
  for (json stop : {json(" in possession"), json({"zzz", " in poss", "fortune"})}) {
    auto h = complete({{"max_tokens", 40}, {"temperature", 0}, {"stop", stop}});
    ASSERT_EQ(h.code, 200) << h.body;
    EXPECT_EQ(h.json()["choices"][0]["text"], want) << stop;
    EXPECT_EQ(h.json()["choices"][0]["finish_reason"], "stop");
    bool done = false;
    auto s = complete({{"max_tokens", 40}, {"temperature", 0}, {"stop", stop}, {"stream", true}});
    auto events = test::sse_events(s.body, &done);
    EXPECT_TRUE(done) << s.body;
    EXPECT_EQ(stream_text(events, 0, false), want) << stop;
    EXPECT_EQ(events.back()["choices"][0]["finish_reason"], "stop") << s.body;
  }
  // Chat: the same cut, then the chat post-processing (strip) of the non-streamed content.
  auto c = chat({{"max_tokens", 30}, {"temperature", 0}});
  ASSERT_EQ(c.code, 200) << c.body;
  auto cs = chat({{"max_tokens", 30}, {"temperature", 0}, {"stream", true}});
  const std::string raw = stream_text(test::sse_events(cs.body), 0, true);
  ASSERT_GE(raw.size(), 8u) << raw;
  const std::string stop = raw.substr(raw.size() / 2, 4);
  const std::string cut = raw.substr(0, raw.find(stop));
  auto cp = chat({{"max_tokens", 30}, {"temperature", 0}, {"stop", stop}});
  EXPECT_EQ(cp.json()["choices"][0]["message"]["content"], strip(cut)) << cp.body;
  auto cst = chat({{"max_tokens", 30}, {"temperature", 0}, {"stop", stop}, {"stream", true}});
  EXPECT_EQ(stream_text(test::sse_events(cst.body), 0, true), cut) << cst.body;
}

TEST_F(OpenAI, ThreeChoicesReproducibleWithSeed) {
  json body = {{"max_tokens", 6}, {"temperature", 5}, {"top_p", 1}, {"top_k", 0}, {"n", 3}, {"seed", 11}};
  auto a = complete(body), b = complete(body);
  ASSERT_EQ(a.code, 200) << a.body;
  ASSERT_EQ(a.json()["choices"].size(), 3u);
  std::set<std::string> texts;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(a.json()["choices"][i]["index"], i);
    EXPECT_EQ(a.json()["choices"][i]["text"], b.json()["choices"][i]["text"]) << "choice " << i;
    texts.insert(a.json()["choices"][i]["text"].get<std::string>());
  }
  EXPECT_EQ(texts.size(), 3u) << "each choice draws with its own seed: " << a.body;
  EXPECT_EQ(a.json()["usage"]["completion_tokens"], 18) << a.body;
  body["stream"] = true;
  auto events = test::sse_events(complete(body).body);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(stream_text(events, i, false), a.json()["choices"][i]["text"]) << i;
  body["seed"] = 12;
  body["stream"] = false;
  EXPECT_NE(complete(body).json()["choices"], a.json()["choices"]);
  // Chat too.
  auto c = chat({{"max_tokens", 4}, {"temperature", 5}, {"top_k", 0}, {"top_p", 1}, {"n", 3}, {"seed", 5}});
  ASSERT_EQ(c.code, 200) << c.body;
  EXPECT_EQ(c.json()["choices"].size(), 3u);
}

// logprobs of the greedy tokens = log_softmax of `glmpipe forward`'s logits at their positions.
TEST_F(OpenAI, GreedyLogprobsEqualForwardLogSoftmax) {
  const auto prompt = demo_ids(kPrompt);
  const auto gen = generate_ids(prompt, "--greedy --max-new-tokens 5");
  ASSERT_EQ(gen.size(), 5u);
  auto ids = prompt;
  ids.insert(ids.end(), gen.begin(), gen.end());
  auto ls = at::log_softmax(forward_logits(ids, prompt.size(), *dir_), 1);
  auto h = complete({{"max_tokens", 5}, {"temperature", 0}, {"logprobs", 5}});
  ASSERT_EQ(h.code, 200) << h.body;
  json lp = h.json()["choices"][0]["logprobs"];
  ASSERT_EQ(lp["token_logprobs"].size(), 5u) << lp;
  auto c = chat({{"messages", json::array({{{"role", "user"}, {"content", kPrompt}}})}, {"max_tokens", 1}});
  for (size_t k = 0; k < 5; ++k) {
    const int64_t row = static_cast<int64_t>(prompt.size() - 1 + k);
    const double want = ls[row][gen[k]].item<double>();
    EXPECT_NEAR(lp["token_logprobs"][k].get<double>(), want, 1e-4) << "token " << k;
    auto top = std::get<0>(ls[row].topk(5));
    std::vector<double> got;
    for (const auto& [t, v] : lp["top_logprobs"][k].items()) got.push_back(v.get<double>());
    std::sort(got.rbegin(), got.rend());
    ASSERT_EQ(got.size(), 5u);
    for (int i = 0; i < 5; ++i) EXPECT_NEAR(got[i], top[i].item<double>(), 1e-4) << "token " << k << " alt " << i;
  }
  // Chat: choices[].logprobs.content[].{token, logprob, top_logprobs} for the chat prompt.
  auto ch = chat({{"max_tokens", 3}, {"temperature", 0}, {"logprobs", true}, {"top_logprobs", 2}});
  ASSERT_EQ(ch.code, 200) << ch.body;
  json content = ch.json()["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 3u) << ch.body;
  for (const auto& e : content) {
    EXPECT_TRUE(e["token"].is_string());
    EXPECT_LE(e["logprob"].get<double>(), 0.0);
    ASSERT_EQ(e["top_logprobs"].size(), 2u);
    EXPECT_DOUBLE_EQ(e["top_logprobs"][0]["logprob"].get<double>(), e["logprob"].get<double>());  // greedy = top 1
  }
}

// presence/frequency penalties: the reported distribution equals OpenAI's formula applied to the
// raw logits, logit[j] - freq * count[j] - pres * (count[j] > 0), count = times j was generated.
TEST_F(OpenAI, PenaltiesFollowTheirFormula) {
  const double pres = 1.5, freq = 0.7;
  const auto prompt = demo_ids(kPrompt);
  auto h = complete({{"max_tokens", 8}, {"temperature", 0}, {"logprobs", 20}, {"presence_penalty", pres},
                     {"frequency_penalty", freq}});
  ASSERT_EQ(h.code, 200) << h.body;
  json lp = h.json()["choices"][0]["logprobs"];
  // The generated ids (as ids) from `generate` with the same flags; the numbers from forward logits.
  const auto gen = generate_ids(prompt, "--greedy --max-new-tokens 8 --presence-penalty 1.5 --frequency-penalty 0.7");
  ASSERT_EQ(lp["token_logprobs"].size(), gen.size()) << h.body;
  auto ids = prompt;
  ids.insert(ids.end(), gen.begin(), gen.end());
  auto logits = forward_logits(ids, prompt.size(), *dir_);
  std::map<int64_t, int> count;
  bool changed = false;
  for (size_t k = 0; k < gen.size(); ++k) {
    auto raw = logits[static_cast<int64_t>(prompt.size() - 1 + k)];
    auto x = raw.clone();
    for (const auto& [id, n] : count) x[id] -= freq * n + pres;
    auto ls = at::log_softmax(x, 0);
    EXPECT_EQ(ls.argmax().item<int64_t>(), gen[k]) << "step " << k;
    EXPECT_NEAR(lp["token_logprobs"][k].get<double>(), ls[gen[k]].item<double>(), 1e-4) << "step " << k;
    auto top = std::get<0>(ls.topk(20));
    std::vector<double> got;
    for (const auto& [t, v] : lp["top_logprobs"][k].items()) got.push_back(v.get<double>());
    std::sort(got.rbegin(), got.rend());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], top[i].item<double>(), 1e-4) << k << "/" << i;
    changed = changed || std::abs(at::log_softmax(raw, 0)[gen[k]].item<double>() - ls[gen[k]].item<double>()) > 1e-3;
    count[gen[k]] += 1;
  }
  EXPECT_TRUE(changed) << "the penalties changed nothing";
  // Without penalties the first step is the same (nothing generated yet) and later ones differ.
  auto plain = complete({{"max_tokens", 8}, {"temperature", 0}, {"logprobs", 20}});
  EXPECT_NEAR(plain.json()["choices"][0]["logprobs"]["token_logprobs"][0].get<double>(),
              lp["token_logprobs"][0].get<double>(), 1e-6);
}

// logit_bias is added to the logits: +100 on one token makes it the greedy choice, and the
// reported logprob is the log-softmax of the biased logits.
TEST_F(OpenAI, LogitBiasIsAddedToTheLogits) {
  const auto prompt = demo_ids(kPrompt);
  const int64_t forced = demo_ids("Bennet")[0];
  auto h = complete({{"max_tokens", 1}, {"temperature", 0}, {"logprobs", 1}, {"logit_bias", {{std::to_string(forced), 30}}}});
  ASSERT_EQ(h.code, 200) << h.body;
  auto raw = forward_logits(prompt, prompt.size(), *dir_)[static_cast<int64_t>(prompt.size() - 1)];
  auto x = raw.clone();
  x[forced] += 30;
  ASSERT_EQ(x.argmax().item<int64_t>(), forced);
  EXPECT_NEAR(h.json()["choices"][0]["logprobs"]["token_logprobs"][0].get<double>(),
              at::log_softmax(x, 0)[forced].item<double>(), 1e-4);
  auto tok = ChatGLMTokenizer::load(demo_dir() + "/ice_text.model");
  EXPECT_EQ(strip(h.json()["choices"][0]["text"]), strip(tok.decode({static_cast<int>(forced)}))) << h.body;
}

TEST_F(OpenAI, UsageIsExactAndIncludeUsageAddsAFinalChunk) {
  const int64_t prompt_tokens = static_cast<int64_t>(demo_ids(kPrompt).size());
  auto h = complete({{"max_tokens", 5}, {"temperature", 0}});
  ASSERT_EQ(h.code, 200) << h.body;
  EXPECT_EQ(h.json()["usage"]["prompt_tokens"], prompt_tokens);
  EXPECT_EQ(h.json()["usage"]["completion_tokens"], 5);
  EXPECT_EQ(h.json()["usage"]["total_tokens"], prompt_tokens + 5);
  bool done = false;
  auto s = complete({{"max_tokens", 5}, {"temperature", 0}, {"stream", true}, {"stream_options", {{"include_usage", true}}}});
  auto events = test::sse_events(s.body, &done);
  ASSERT_TRUE(done) << s.body;
  ASSERT_GE(events.size(), 2u);
  EXPECT_TRUE(events.back()["choices"].empty()) << s.body;
  EXPECT_EQ(events.back()["usage"]["prompt_tokens"], prompt_tokens);
  EXPECT_EQ(events.back()["usage"]["completion_tokens"], 5);
  auto without = test::sse_events(complete({{"max_tokens", 5}, {"temperature", 0}, {"stream", true}}).body);
  for (const auto& e : without) EXPECT_FALSE(e.contains("usage") && !e["usage"].is_null()) << e;
  auto cs = chat({{"max_tokens", 4}, {"stream", true}, {"stream_options", {{"include_usage", true}}}});
  auto cev = test::sse_events(cs.body);
  ASSERT_FALSE(cev.empty());
  EXPECT_EQ(cev.back()["usage"]["completion_tokens"], 4) << cs.body;
}

TEST_F(OpenAI, CompletionsPlainStreamedEchoAndPromptLists) {
  auto plain = complete({{"max_tokens", 12}, {"temperature", 0}});
  ASSERT_EQ(plain.code, 200) << plain.body;
  json p = plain.json();
  EXPECT_EQ(p["object"], "text_completion");
  const std::string text = p["choices"][0]["text"];
  EXPECT_EQ(text.rfind(" that a single man", 0), 0u) << text;
  bool done = false;
  auto events = test::sse_events(complete({{"max_tokens", 12}, {"temperature", 0}, {"stream", true}}).body, &done);
  EXPECT_TRUE(done);
  EXPECT_EQ(stream_text(events, 0, false), text);
  EXPECT_EQ(events.front()["object"], "text_completion");
  auto echo = complete({{"max_tokens", 12}, {"temperature", 0}, {"echo", true}});
  EXPECT_EQ(echo.json()["choices"][0]["text"], std::string(kPrompt) + text);
  auto two = complete({{"prompt", {kPrompt, "However little known"}}, {"max_tokens", 6}, {"temperature", 0}});
  ASSERT_EQ(two.code, 200) << two.body;
  ASSERT_EQ(two.json()["choices"].size(), 2u);
  EXPECT_EQ(text.rfind(two.json()["choices"][0]["text"].get<std::string>(), 0), 0u);
  EXPECT_EQ(two.json()["choices"][1]["text"].get<std::string>().rfind(" the feelings", 0), 0u) << two.body;
  EXPECT_EQ(two.json()["usage"]["prompt_tokens"],
            demo_ids(kPrompt).size() + demo_ids("However little known").size());
}

TEST_F(OpenAI, EveryUnsupportedFieldIs400NamingItAndTheServerKeepsServing) {
  const std::vector<std::pair<json, std::string>> chat_cases = {
      {{{"response_format", {{"type", "json_object"}}}}, "response_format"},
      {{{"tools", json::array({{{"type", "function"}, {"function", {{"name", "f"}}}}})}}, "tools"},
      {{{"tool_choice", "auto"}}, "tool_choice"},
      {{{"functions", json::array({{{"name", "f"}}})}}, "functions"},
      {{{"function_call", "auto"}}, "function_call"},
      {{{"audio", {{"voice", "x"}}}}, "audio"},
      {{{"modalities", {"text", "audio"}}}, "modalities"},
      {{{"prediction", {{"type", "content"}, {"content", "x"}}}}, "prediction"},
      {{{"web_search_options", json::object()}}, "web_search_options"},
      {{{"store", true}}, "store"},
      {{{"logprobs", "yes"}}, "logprobs"},
      {{{"logprobs", true}, {"top_logprobs", 21}}, "top_logprobs"},
      {{{"top_logprobs", 2}}, "top_logprobs"},
      {{{"n", 0}}, "n"},
      {{{"stop", {"a", "b", "c", "d", "e"}}}, "stop"},
      {{{"stop", 5}}, "stop"},
      {{{"logit_bias", {{"abc", 1}}}}, "logit_bias"},
      {{{"logit_bias", {{"999999", 1}}}}, "logit_bias"},
      {{{"logit_bias", {{"5", 101}}}}, "logit_bias"},
      {{{"presence_penalty", 3}}, "presence_penalty"},
      {{{"frequency_penalty", -2.5}}, "frequency_penalty"},
      {{{"temperature", -1}}, "temperature"},
      {{{"top_p", 0}}, "top_p"},
      {{{"max_tokens", 0}}, "max_tokens"},
      {{{"max_completion_tokens", "x"}}, "max_completion_tokens"},
      {{{"seed", "x"}}, "seed"},
      {{{"stream_options", {{"include_usage", true}}}}, "stream_options"},
      {{{"user", 5}}, "user"},
      {{{"messages", json::array({{{"role", "user"}, {"content", json::array({{{"type", "image_url"}}})}}})}}, "messages"},
  };
  for (const auto& [fields, param] : chat_cases) {
    json body = fields;
    expect_error(chat(body), param, "chat " + fields.dump());
  }
  const std::vector<std::pair<json, std::string>> completion_cases = {
      {{{"suffix", "x"}}, "suffix"},
      {{{"echo", true}, {"logprobs", 2}}, "echo"},
      {{{"best_of", 2}}, "best_of"},
      {{{"logprobs", 21}}, "logprobs"},
      {{{"prompt", 5}}, "prompt"},
      {{{"stop", json::array({""})}}, "stop"},
  };
  for (const auto& [fields, param] : completion_cases) expect_error(complete(fields), param, "completions " + fields.dump());
  // Known and honoured, or unknown and ignored: 200.
  for (json ok : {json{{"user", "u1"}, {"response_format", {{"type", "text"}}}, {"tool_choice", "none"},
                       {"metadata", {{"k", "v"}}}, {"some_future_field", 1}, {"max_completion_tokens", 2}},
                  json{{"messages", json::array({{{"role", "developer"}, {"content", "be brief"}},
                                                 {{"role", "user"}, {"content", json::array({{{"type", "text"}, {"text", "hi"}}})}}})},
                       {"max_tokens", 2}}}) {
    auto h = chat(ok);
    EXPECT_EQ(h.code, 200) << ok << ": " << h.body;
  }
  EXPECT_EQ(chat({{"max_completion_tokens", 2}}).json()["usage"]["completion_tokens"], 2);
}

TEST_F(OpenAI, OpenApiDescriptionListsWhatIsServed) {
  auto h = server_->get("/openapi.json");
  ASSERT_EQ(h.code, 200);
  json spec = h.json();
  EXPECT_EQ(spec["openapi"].get<std::string>().substr(0, 2), "3.");
  EXPECT_EQ(spec, json::parse(test::read_file(test::source_dir() + "/launcher/openapi.json")));  // the file in the repo
  for (const char* path : {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"}) {
    ASSERT_TRUE(spec["paths"].contains(path)) << path;
    const std::string method = spec["paths"][path].contains("post") ? "post" : "get";
    auto r = method == "post" ? server_->post(path, json{{"prompt", kPrompt}, {"max_tokens", 1},
                                                         {"messages", json::array({{{"role", "user"}, {"content", "x"}}})}})
                              : server_->get(path);
    EXPECT_EQ(r.code, 200) << path << ": " << r.body;
  }
  // Every request property the description lists is one the server knows: not ignored as unknown.
  for (const char* path : {"/v1/chat/completions", "/v1/completions"}) {
    const std::string ref = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"];
    const json schema = spec["components"]["schemas"][ref.substr(ref.rfind('/') + 1)];
    for (const auto& [name, prop] : schema["properties"].items()) {
      json bad = {{"prompt", kPrompt}, {"messages", json::array({{{"role", "user"}, {"content", "x"}}})}};
      bad[name] = json::array({json::object(), 1});  // wrong in every schema
      auto r = server_->post(path, bad);
      EXPECT_EQ(r.code, 400) << path << " property '" << name << "' is documented but not checked: " << r.body;
    }
    // ... and every sampling field the server reads is documented.
    for (const auto& f : sampling_field_names()) EXPECT_TRUE(schema["properties"].contains(f)) << path << ": " << f;
  }
}

// A 2-rank pipeline: the sampling parameters reach the last stage once per sequence.
TEST(OpenAIPipeline, CompletionsThroughTwoRanks) {
  const std::string dir = test::make_temp_dir("openai_pipe");
  std::ofstream(dir + "/two.yaml") << "model: {path: " << demo_dir() << ", dtype: float32}\nranks:\n"
                                      "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                                      "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                                      "placement: balanced\nkv_cache: {max_batch: 4, max_seq_len: 256}\n"
                                      "reserve: {cpu: 64MiB}\ngeneration: {temperature: 0, max_tokens: 12}\n";
  test::ServeProcess two(dir, "--config " + dir + "/two.yaml");
  ASSERT_TRUE(two.wait_healthy(120)) << two.log();
  auto h = two.post("/v1/completions", json{{"prompt", kPrompt}});  // greedy, 12 tokens: the YAML defaults
  ASSERT_EQ(h.code, 200) << h.body;
  const std::string text = h.json()["choices"][0]["text"];
  EXPECT_EQ(text.rfind(" that a single man", 0), 0u) << text;
  EXPECT_EQ(h.json()["usage"]["completion_tokens"], 12);
  EXPECT_EQ(h.json()["model"], "demo");
  bool done = false;
  auto events = test::sse_events(two.post("/v1/completions", json{{"prompt", kPrompt}, {"stream", true}}).body, &done);
  EXPECT_TRUE(done);
  EXPECT_EQ(stream_text(events, 0, false), text);
  auto stopped = two.post("/v1/completions", json{{"prompt", kPrompt}, {"stop", " single"}, {"logprobs", 2},
                                                  {"n", 2}, {"logit_bias", {{"5", -1}}}});
  ASSERT_EQ(stopped.code, 200) << stopped.body;
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(stopped.json()["choices"][i]["text"], text.substr(0, text.find(" single"))) << stopped.body;
    EXPECT_EQ(stopped.json()["choices"][i]["logprobs"]["top_logprobs"][0].size(), 2u) << stopped.body;
  }
}

}  // namespace

namespace {

// `batch` lines take the same stop field: the written text ends before the stop string, as the
// server's does, finish_reason "stop", and the rest of the sequence is not generated.
TEST(OpenAIBatch, StopStringsInBatchLinesCutTheText) {
  const std::string dir = test::make_temp_dir("openai_batch");
  std::ofstream(dir + "/in.jsonl") << json{{"id", "a"}, {"prompt", kPrompt}, {"max_tokens", 16}, {"temperature", 0}}.dump()
                                   << "\n"
                                   << json{{"id", "b"}, {"prompt", kPrompt}, {"max_tokens", 16}, {"temperature", 0},
                                           {"stop", " single"}}.dump()
                                   << "\n";
  auto r = test::run_command(test::glmpipe_bin() + " batch --model " + demo_dir() + " --threads 1 --input " + dir +
                             "/in.jsonl --output " + dir + "/out.jsonl");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, json> out;
  std::istringstream lines(test::read_file(dir + "/out.jsonl"));
  for (std::string l; std::getline(lines, l);) out[json::parse(l)["id"]] = json::parse(l);
  ASSERT_EQ(out.size(), 2u);
  const std::string full = out["a"]["text"];
  ASSERT_NE(full.find(" single"), std::string::npos) << "the demo model did not recite its paragraph: " << full;
  EXPECT_EQ(out["b"]["text"], strip(full.substr(0, full.find(" single"))));
  EXPECT_EQ(out["b"]["finish_reason"], "stop");
  EXPECT_EQ(out["a"]["finish_reason"], "length");
  EXPECT_LT(out["b"]["generated_tokens"].get<int64_t>(), out["a"]["generated_tokens"].get<int64_t>()) << out["b"];
}

}  // namespace
