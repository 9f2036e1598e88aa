// The OpenAI surface over the family chat formats (launcher/openai_request.cpp, openai_response.cpp)
// with the real ChatGLM2/3 and GLM-4 tokenizers (skipped without ../shared/data): the chat prompt
// a request builds is the family's (tools included, as `tokenize --chat` reads the same JSON),
// tool_choice is honoured or refused naming the field, and a tool-call reply becomes OpenAI
// `tool_calls` with finish_reason "tool_calls" (the model side: a tiny random model never writes
// a call by itself, so the reply ids are encoded here from what the real models write).
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "launcher/openai_request.h"
#include "launcher/openai_response.h"
#include "model/chat/chat_json.h"
#include "model/tokenizer/tokenizer_loader.h"
#include "tests/family_chat_formats.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

using test::glm2_path;
using test::glm4_path;
const ChatFormat& fmt(ChatFamily f) { return test::family_format(f); }

ApiContext context(const ChatFormat& f) {
  ApiContext c;
  c.chat = &f;
  c.model_names = {"m"};
  c.vocab_size = f.tokenizer().num_ids();
  return c;
}

// Key order matters: the tools' JSON is written into the system prompt as given.
const char* kWeather = R"({"messages": [{"role": "user", "content": "北京天气怎么样？"}],
  "tools": [{"type": "function", "function": {"name": "get_weather", "description": "查询天气",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]})";

std::vector<int64_t> expected_ids(const ChatFormat& f, const std::string& body, bool with_tools) {
  const ChatInput in = chat_input_from_json(ojson::parse(body), "test");
  std::vector<int64_t> out;
  for (int id : f.prompt_ids(in.messages, with_tools ? in.tools : ojson(nullptr))) out.push_back(id);
  return out;
}

// The ApiError a request gets (status 0 when it is accepted).
ApiError refusal(const std::string& body, const ApiContext& ctx) {
  try {
    parse_chat_request(body, ctx);
  } catch (const ApiError& e) {
    return e;
  }
  return ApiError{0, "", "", ""};
}

std::string with(const char* base, const std::string& key, const std::string& value_json) {
  ojson j = ojson::parse(base);
  j[key] = ojson::parse(value_json);
  return j.dump();
}

TEST(OpenAITools, Glm4ToolsBecomeTheSystemPromptAndStopIdsAreTheFamilys) {
  SKIP_WITHOUT(glm4_path());
  const ChatFormat& f = fmt(ChatFamily::kGLM4);
  const ApiContext ctx = context(f);
  const ApiRequest r = parse_chat_request(kWeather, ctx);
  EXPECT_TRUE(r.tools_offered);
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].ids, expected_ids(f, kWeather, true));
  const std::string text = f.tokenizer().decode(std::vector<int>(r.prompts[0].ids.begin(), r.prompts[0].ids.end()), true);
  EXPECT_NE(text.find("## get_weather"), std::string::npos) << text;
  EXPECT_EQ(r.stop_ids, (std::vector<int64_t>{151329, 151336, 151338}));
  // "auto" is the default; "none" leaves the tools out of the prompt.
  EXPECT_EQ(parse_chat_request(with(kWeather, "tool_choice", "\"auto\""), ctx).prompts[0].ids, r.prompts[0].ids);
  const ApiRequest none = parse_chat_request(with(kWeather, "tool_choice", "\"none\""), ctx);
  EXPECT_FALSE(none.tools_offered);
  EXPECT_EQ(none.prompts[0].ids, expected_ids(f, kWeather, false));
  EXPECT_NE(none.prompts[0].ids, r.prompts[0].ids);
}

TEST(OpenAITools, ToolChoiceAndToolsRefusedNamingTheField) {
  SKIP_WITHOUT(glm4_path());
  const ApiContext glm4 = context(fmt(ChatFamily::kGLM4));
  for (const char* choice : {R"("required")", R"({"type": "function", "function": {"name": "get_weather"}})", "3"}) {
    const ApiError e = refusal(with(kWeather, "tool_choice", choice), glm4);
    EXPECT_EQ(e.status, 400) << choice;
    EXPECT_EQ(e.param, "tool_choice") << choice;
  }
  for (const char* tools : {R"({"a": 1})", R"([{"type": "function"}])", R"([{"type": "code", "function": {"name": "x"}}])"}) {
    const ApiError e = refusal(with(kWeather, "tools", tools), glm4);
    EXPECT_EQ(e.status, 400) << tools;
    EXPECT_EQ(e.param, "tools") << tools;
  }
  // ChatGLM2 has no tool-call format: tools and a tool_choice other than "none" are refused.
  const ApiContext glm2 = context(fmt(ChatFamily::kChatGLM2));
  EXPECT_EQ(refusal(kWeather, glm2).param, "tools");
  const std::string plain = R"({"messages": [{"role": "user", "content": "你好"}]})";
  EXPECT_EQ(refusal(with(plain.c_str(), "tool_choice", "\"auto\""), glm2).param, "tool_choice");
  EXPECT_EQ(refusal(with(plain.c_str(), "tool_choice", "\"none\""), glm2).status, 0);
  const ApiRequest r = parse_chat_request(plain, glm2);
  EXPECT_EQ(r.prompts[0].ids, expected_ids(fmt(ChatFamily::kChatGLM2), plain, false));
  EXPECT_EQ(r.stop_ids, (std::vector<int64_t>{2}));
}

// An OpenAI conversation that replays a call (assistant tool_calls with content null, then the
// "tool" result) builds the same prompt as `tokenize --chat` does from the same JSON.
TEST(OpenAITools, ReplayedCallsBuildTheChatJsonPrompt) {
  SKIP_WITHOUT(glm4_path());
  const std::string body = R"({"messages": [
      {"role": "developer", "content": [{"type": "text", "text": "你是"}, {"type": "text", "text": "助手"}]},
      {"role": "user", "content": "北京天气"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"北京\"}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "晴"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]})";
  const std::string same = R"({"messages": [
      {"role": "system", "content": "你是助手"},
      {"role": "user", "content": "北京天气"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"北京\"}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "晴"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]})";
  for (ChatFamily fam : {ChatFamily::kGLM4, ChatFamily::kChatGLM3}) {
    if (fam == ChatFamily::kChatGLM3 && !test::file_exists(glm2_path())) continue;
    const ChatFormat& f = fmt(fam);
    const ApiRequest r = parse_chat_request(body, context(f));
    EXPECT_EQ(r.prompts[0].ids, expected_ids(f, same, true)) << chat_family_name(fam);
  }
}

TEST(OpenAITools, Glm4ToolCallReplyBecomesToolCalls) {
  SKIP_WITHOUT(glm4_path());
  const ChatFormat& f = fmt(ChatFamily::kGLM4);
  // What GLM-4 writes after <|assistant|> for a call (the final <|observation|> is not in `ids`).
  const std::vector<int> ids = f.tokenizer().encode_text("get_weather\n{\"city\": \"北京\"}");
  const std::string text = f.tokenizer().decode(ids);
  const ChoiceOut o = chat_choice(f, 0, ids, text, false, /*tools_offered=*/true, "stop", "x_0");
  ASSERT_EQ(o.tool_calls.size(), 1u);
  EXPECT_EQ(o.finish_reason, "tool_calls");
  EXPECT_EQ(o.tool_calls[0].id, "call_x_0_0");
  const json body = completion_body(Endpoint::kChat, "chatcmpl-x", "m", {o}, 10, 8);
  const json& c = body["choices"][0];
  EXPECT_EQ(c["finish_reason"], "tool_calls");
  EXPECT_TRUE(c["message"]["content"].is_null()) << body;
  ASSERT_EQ(c["message"]["tool_calls"].size(), 1u) << body;
  const json& call = c["message"]["tool_calls"][0];
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["id"], "call_x_0_0");
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(call["function"]["arguments"].get<std::string>()), json::parse(R"({"city": "北京"})"));
  // A stream delta carries the calls with their index.
  const json chunk = stream_chunk(Endpoint::kChat, "chatcmpl-x", "m", 0, "", false, nullptr, nullptr,
                                  tool_calls_json(o.tool_calls, true));
  EXPECT_EQ(chunk["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
  EXPECT_FALSE(chunk["choices"][0]["delta"].contains("content"));
  // No tools offered, or cut by a stop string: text, never a call.
  const ChoiceOut plain = chat_choice(f, 0, ids, text, false, false, "stop", "x_0");
  EXPECT_TRUE(plain.tool_calls.empty());
  EXPECT_EQ(plain.finish_reason, "stop");
  EXPECT_EQ(completion_body(Endpoint::kChat, "c", "m", {plain}, 1, 1)["choices"][0]["message"]["content"],
            "get_weather\n{\"city\": \"北京\"}");
  const ChoiceOut cut = chat_choice(f, 0, ids, "get_weather\n", true, true, "stop", "x_0");
  EXPECT_TRUE(cut.tool_calls.empty());
  EXPECT_EQ(cut.text, "get_weather");
  // A plain reply with tools offered: content, the leading "\n" stripped.
  const std::vector<int> hi = f.tokenizer().encode_text("\n你好👋！");
  const ChoiceOut text_reply = chat_choice(f, 0, hi, f.tokenizer().decode(hi), false, true, "stop", "x_0");
  EXPECT_TRUE(text_reply.tool_calls.empty());
  EXPECT_EQ(text_reply.text, "你好👋！");
  EXPECT_EQ(text_reply.finish_reason, "stop");
}

TEST(OpenAITools, ChatGLM3ToolCallReplyBecomesToolCalls) {
  SKIP_WITHOUT(glm2_path());
  const ChatFormat& f = fmt(ChatFamily::kChatGLM3);
  const std::vector<int> ids =
      f.tokenizer().encode_text("random_number_generator\n```python\ntool_call(seed=42, range=(0, 100))\n```");
  const ChoiceOut o = chat_choice(f, 0, ids, f.tokenizer().decode(ids), false, true, "stop", "y_1");
  ASSERT_EQ(o.tool_calls.size(), 1u);
  EXPECT_EQ(o.finish_reason, "tool_calls");
  const json call = completion_body(Endpoint::kChat, "c", "m", {o}, 1, 1)["choices"][0]["message"]["tool_calls"][0];
  EXPECT_EQ(call["function"]["name"], "random_number_generator");
  EXPECT_EQ(json::parse(call["function"]["arguments"].get<std::string>()), json::parse(R"({"seed": 42, "range": [0, 100]})"));
  // A call cut by max_tokens keeps its finish_reason "length" (it is still parsed when complete).
  EXPECT_EQ(chat_choice(f, 0, ids, "", false, true, "length", "y_1").finish_reason, "length");
}

// Logprobs token text of each family: the bytes the token stands for.
TEST(OpenAITools, TokenTextIsTheTokensBytes) {
  SKIP_WITHOUT(glm4_path());
  const Tokenizer& g4 = fmt(ChatFamily::kGLM4).tokenizer();
  std::string joined;
  const std::vector<int> ids = g4.encode_text(" hello 世界\n");
  for (int id : ids) joined += token_text(g4, id);
  EXPECT_EQ(joined, " hello 世界\n");
  EXPECT_EQ(token_text(g4, 151336), "<|user|>");
  if (!test::file_exists(glm2_path())) return;
  const Tokenizer& g3 = fmt(ChatFamily::kChatGLM3).tokenizer();
  joined.clear();
  for (int id : g3.encode_text("hello 世界\n")) joined += token_text(g3, id);
  EXPECT_EQ(joined, " hello 世界\n");  // sentencepiece's dummy prefix is a space
  EXPECT_EQ(token_text(g3, 64795), "<|user|>");
}

}  // namespace
}  // namespace glmpipe

namespace glmpipe {
namespace {

// ChatGLM-6B's official code raises on a prompt without [MASK]/[gMASK] or <sop>: text prompts of
// the server are refused the same way (naming the field), id prompts stay raw.
TEST(OfficialPrompt, V1TextPromptsNeedTheConfigsMaskAndSop) {
  const ChatFormat f(load_tokenizer(test::source_dir() + "/tests/data/tiny_chatglm.model", false), ChatFamily::kChatGLM);
  ModelConfig cfg;  // v1
  const Tokenizer& t = f.tokenizer();
  cfg.gmask_token_id = t.special_id("[gMASK]");
  cfg.mask_token_id = t.special_id("[MASK]");
  cfg.bos_token_id = t.special_id("<sop>");
  ApiContext ctx = context(f);
  ctx.model = &cfg;
  const std::string chat = R"({"messages": [{"role": "user", "content": "hello"}]})";
  EXPECT_EQ(refusal(chat, ctx).status, 0);
  std::vector<int64_t> ids;
  for (int id : f.text_ids("hello")) ids.push_back(id);
  EXPECT_EQ(official_prompt_problem(cfg, ids), "");
  // A config.json whose specials are not the tokenizer's.
  ModelConfig other = cfg;
  other.gmask_token_id = t.num_ids() + 1;
  other.mask_token_id = t.num_ids() + 2;
  EXPECT_NE(official_prompt_problem(other, ids).find("neither [MASK]"), std::string::npos);
  ctx.model = &other;
  const ApiError e = refusal(chat, ctx);
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "messages");
  EXPECT_NE(e.message.find("[gMASK] (id " + std::to_string(other.gmask_token_id) + ")"), std::string::npos) << e.message;
  try {
    parse_completion_request(R"({"prompt": "hello"})", ctx);
    ADD_FAILURE() << "a text prompt without the config's [gMASK] was accepted";
  } catch (const ApiError& c) {
    EXPECT_EQ(c.param, "prompt");
  }
  EXPECT_EQ(parse_completion_request(R"({"prompt": [5, 6, 7]})", ctx).prompts[0].ids, (std::vector<int64_t>{5, 6, 7}));
  ModelConfig no_sop = cfg;
  no_sop.bos_token_id = t.num_ids() + 3;
  EXPECT_NE(official_prompt_problem(no_sop, ids).find("no <sop>"), std::string::npos);
  // The other families' official code has no such check.
  ModelConfig v2 = other;
  v2.family = Family::kChatGLM2;
  EXPECT_EQ(official_prompt_problem(v2, {1, 2, 3}), "");
}

}  // namespace
}  // namespace glmpipe
