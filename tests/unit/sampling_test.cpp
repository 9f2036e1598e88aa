// The one sampling-parameters type (common/sampling_params.h): one validator behind HTTP requests,
// batch lines and YAML `generation:`; the sampler's penalties, logit_bias and logprobs against a
// direct computation on the logits; stop strings on choice text; the last-stage params message.
#include <gtest/gtest.h>

#include <cmath>

#include "common/sampling_params.h"
#include "launcher/batch_job.h"
#include "launcher/openai_request.h"
#include "launcher/openai_response.h"
#include "model/chat/chat_format.h"
#include "planner/deployment.h"
#include "stage/sampler.h"
#include "stage/step_message.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

using json = nlohmann::json;

std::shared_ptr<const ChatGLMTokenizer> demo_tokenizer() {
  return std::make_shared<const ChatGLMTokenizer>(ChatGLMTokenizer::load(test::source_dir() + "/models/demo/ice_text.model"));
}

const char* kRanks = "model: {path: m}\nranks: [{device: cpu, max_memory: 1GiB}]\n";

// The same field, written in each entry point, means the same thing.
TEST(SamplingParams, SameFieldsSameMeaningEverywhere) {
  const ChatFormat fmt(demo_tokenizer(), ChatFamily::kChatGLM);
  ApiContext ctx;
  ctx.chat = &fmt;
  ctx.model_names = {"demo"};
  ctx.vocab_size = 640;
  const json fields = {{"temperature", 0}, {"top_p", 0.5}, {"max_tokens", 7}, {"presence_penalty", 0.5},
                       {"frequency_penalty", -0.25}, {"logit_bias", {{"12", -3.5}}}, {"stop", {"a", "bc"}}, {"seed", 9}};
  json chat = fields;
  chat["messages"] = json::array({{{"role", "user"}, {"content", "hi"}}});
  const SamplingParams http = parse_chat_request(chat.dump(), ctx).params;
  json line = fields;
  line["id"] = "x";
  line["ids"] = {5, 8};
  const SamplingParams batch = parse_batch_line(line.dump(), 1, SamplingParams{}, nullptr, 640).params;
  const SamplingParams yaml = parse_deployment(std::string(kRanks) +
                                                   "generation: {temperature: 0, top_p: 0.5, max_tokens: 7, "
                                                   "presence_penalty: 0.5, frequency_penalty: -0.25, "
                                                   "logit_bias: {12: -3.5}, stop: [a, bc], seed: 9}\n",
                                               "d.yaml")
                                  .generation;
  for (const SamplingParams* p : {&http, &batch, &yaml}) {
    EXPECT_TRUE(p->is_greedy());  // temperature 0 is greedy everywhere
    EXPECT_DOUBLE_EQ(p->top_p, 0.5);
    EXPECT_EQ(p->max_new_tokens, 7);
    EXPECT_DOUBLE_EQ(p->presence_penalty, 0.5);
    EXPECT_DOUBLE_EQ(p->frequency_penalty, -0.25);
    ASSERT_EQ(p->logit_bias.size(), 1u);
    EXPECT_EQ(p->logit_bias[0], (std::pair<int64_t, double>{12, -3.5}));
    EXPECT_EQ(p->stop, (std::vector<std::string>{"a", "bc"}));
    EXPECT_EQ(p->seed, 9u);
  }
}

TEST(SamplingParams, OneValidatorNamesTheField) {
  const std::vector<std::pair<json, std::string>> bad = {
      {{{"temperature", -1}}, "temperature"},     {{{"top_p", 0}}, "top_p"},
      {{{"top_p", 1.5}}, "top_p"},                {{{"max_tokens", 0}}, "max_tokens"},
      {{{"max_new_tokens", "x"}}, "max_new_tokens"}, {{{"presence_penalty", 2.5}}, "presence_penalty"},
      {{{"frequency_penalty", -3}}, "frequency_penalty"}, {{{"logit_bias", {{"x", 1}}}}, "logit_bias"},
      {{{"logit_bias", {{"700", 1}}}}, "logit_bias"},   {{{"logit_bias", {{"1", 200}}}}, "logit_bias"},
      {{{"stop", {"a", "b", "c", "d", "e"}}}, "stop"}, {{{"stop", ""}}, "stop"},
      {{{"seed", 1.5}}, "seed"},                  {{{"greedy", "yes"}}, "greedy"},
      {{{"repetition_penalty", 0}}, "repetition_penalty"}, {{{"top_k", -2}}, "top_k"}};
  for (const auto& [j, field] : bad) {
    SamplingParams p;
    try {
      read_sampling_fields(j, p, 640);
      ADD_FAILURE() << j << ": no error";
    } catch (const SamplingError& e) {
      EXPECT_EQ(e.field(), field) << j << ": " << e.what();
    }
    // The same value in a YAML file names generation.<field> and the file.
    json line = j;
    line["id"] = "x";
    line["ids"] = {5};
    EXPECT_NE(parse_batch_line(line.dump(), 3, SamplingParams{}, nullptr, 640).error.find("\"" + field + "\""),
              std::string::npos) << j;
  }
  try {
    parse_deployment(std::string(kRanks) + "generation: {presence_penalty: 9}\n", "d.yaml");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("d.yaml: generation.presence_penalty: 9 is out of range"), std::string::npos)
        << e.what();
  }
}

at::Tensor logits_of(std::vector<float> v) { return at::tensor(v, at::kFloat); }

TEST(Sampler, GreedyLogprobsArePenalisedLogSoftmax) {
  SamplingParams p;
  p.greedy = true;
  p.presence_penalty = 0.5;
  p.frequency_penalty = 0.25;
  p.logit_bias = {{3, 1.0}};
  p.top_logprobs = 3;
  Sampler s(p);
  const std::vector<float> raw = {2.0f, 1.5f, 0.5f, 0.0f, -1.0f};
  std::map<int64_t, int> count;
  std::vector<int64_t> history = {4};  // prompt: the penalties ignore it (generated tokens only)
  for (int step = 0; step < 4; ++step) {
    auto want = at::tensor(std::vector<double>(raw.begin(), raw.end()), at::kDouble);
    for (const auto& [id, n] : count) want[id] -= 0.25 * n + 0.5;
    want[3] += 1.0;
    auto ls = at::log_softmax(want, 0);
    const int64_t best = ls.argmax().item<int64_t>();
    SampleResult r = s.sample(logits_of(raw), history);
    EXPECT_EQ(r.token, best) << "step " << step;
    EXPECT_NEAR(r.logprob, ls[best].item<double>(), 1e-6);
    ASSERT_EQ(r.top.size(), 3u);
    auto top = ls.topk(3);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(r.top[i].first, std::get<1>(top)[i].item<int64_t>()) << step << "/" << i;
      EXPECT_NEAR(r.top[i].second, std::get<0>(top)[i].item<double>(), 1e-6);
    }
    count[r.token] += 1;
    history.push_back(r.token);
  }
  EXPECT_GT(count.size(), 1u) << "the penalties never moved the argmax";
}

TEST(Sampler, SampledLogprobsAreOverTheNucleusAndSeedsReproduce) {
  SamplingParams p;
  p.temperature = 0.5;
  p.top_k = 0;
  p.top_p = 0.9;
  p.top_logprobs = 4;
  p.seed = 3;
  const std::vector<float> raw = {1.0f, 0.9f, 0.2f, -3.0f};
  // Softmax(raw / 0.5) ≈ {.50, .41, .10, .0006}: the 0.9 nucleus is {0, 1, 2}.
  auto probs = at::softmax(at::tensor(std::vector<double>{2.0, 1.8, 0.4, -6.0}), 0);
  const double mass = probs[0].item<double>() + probs[1].item<double>() + probs[2].item<double>();
  Sampler a(p), b(p);
  for (int i = 0; i < 20; ++i) {
    SampleResult x = a.sample(logits_of(raw), {}), y = b.sample(logits_of(raw), {});
    EXPECT_EQ(x.token, y.token);
    ASSERT_LT(x.token, 3);
    EXPECT_NEAR(x.logprob, std::log(probs[x.token].item<double>() / mass), 1e-6);
    ASSERT_EQ(x.top.size(), 4u);
    EXPECT_EQ(x.top[3].first, 3);
    EXPECT_EQ(x.top[3].second, kExcludedLogprob);  // outside the nucleus
  }
}

TEST(ParamsMessage, RoundTrips) {
  SamplingParams p;
  p.greedy = true;
  p.temperature = 0.3;
  p.top_k = 7;
  p.top_p = 0.8;
  p.repetition_penalty = 1.2;
  p.presence_penalty = -0.5;
  p.frequency_penalty = 1.5;
  p.logit_bias = {{1, -100}, {9, 2.5}};
  p.seed = 1ull << 63;
  p.max_new_tokens = 11;
  p.max_length = 99;
  p.top_logprobs = 20;
  SamplingParams q = unpack_params(pack_params(p));
  EXPECT_EQ(q.greedy, p.greedy);
  EXPECT_EQ(q.temperature, p.temperature);
  EXPECT_EQ(q.top_k, p.top_k);
  EXPECT_EQ(q.top_p, p.top_p);
  EXPECT_EQ(q.repetition_penalty, p.repetition_penalty);
  EXPECT_EQ(q.presence_penalty, p.presence_penalty);
  EXPECT_EQ(q.frequency_penalty, p.frequency_penalty);
  EXPECT_EQ(q.logit_bias, p.logit_bias);
  EXPECT_EQ(q.seed, p.seed);
  EXPECT_EQ(q.max_new_tokens, p.max_new_tokens);
  EXPECT_EQ(q.max_length, p.max_length);
  EXPECT_EQ(q.top_logprobs, p.top_logprobs);
}

// Stop strings on the choice text: cut before the first occurrence, even across tokens; the
// streamed pieces never show a tail that may still become a stop string.
TEST(ChoiceText, CutsBeforeTheStopAndHoldsBackPartialMatches) {
  auto tok = demo_tokenizer();
  std::vector<int> ids = tok->encode("It is a truth universally acknowledged, that a single man", false);
  const std::string full = tok->decode(ids);
  for (const std::vector<std::string>& stop :
       {std::vector<std::string>{"single"}, {"zz", "ruth univ", "single"}, {"knowledged, th"}}) {
    size_t cut = std::string::npos;
    for (const auto& s : stop) cut = std::min(cut, full.find(s));
    ChoiceText t(tok, stop);
    std::string streamed;
    bool stopped = false;
    for (int id : ids) {
      stopped = t.push(id);
      const std::string piece = t.take_stable();
      streamed += piece;
      for (const auto& s : stop)  // what was shown never holds the stop string's start past the cut
        EXPECT_EQ(streamed.find(s), std::string::npos) << streamed;
      if (stopped) break;
    }
    t.finish();
    streamed += t.take_stable();
    EXPECT_TRUE(stopped);
    EXPECT_EQ(t.text(), full.substr(0, cut));
    EXPECT_EQ(streamed, full.substr(0, cut));
  }
  ChoiceText none(tok, {"never there"});
  std::string all;
  for (int id : ids) none.push(id), all += none.take_stable();
  none.finish();
  all += none.take_stable();
  EXPECT_FALSE(none.stopped());
  EXPECT_EQ(all, full);
}

}  // namespace
}  // namespace glmpipe
