#include "launcher/openai_request.h"

#include <random>

#include "common/error.h"
#include "model/chat/chat_json.h"

namespace glmpipe {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

json error_body(const ApiError& e) {
  json err = {{"message", e.message}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  return json{{"error", err}};
}

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

namespace {

constexpr int64_t kMaxChoices = 64;

[[noreturn]] void refuse(const std::string& param, const std::string& message, const std::string& code = "invalid_value") {
  throw ApiError{400, message, param, code};
}

template <class J>
bool given(const J& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

json parse_object(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    throw ApiError{400, std::string("malformed JSON body: ") + e.what(), "", "invalid_json"};
  }
  if (!j.is_object()) throw ApiError{400, "the request body must be a JSON object", "", "invalid_json"};
  return j;
}

std::string model_name(const json& j, const ApiContext& ctx) {
  if (!given(j, "model")) return ctx.model_names.at(0);
  if (!j["model"].is_string()) refuse("model", "'model' must be a string", "invalid_type");
  const std::string m = j["model"].get<std::string>();
  for (const auto& n : ctx.model_names)
    if (n == m) return m;
  std::string served;
  for (const auto& n : ctx.model_names) served += (served.empty() ? "'" : ", '") + n + "'";
  throw ApiError{404, "The model '" + m + "' does not exist (this server serves " + served + ")", "model",
                 "model_not_found"};
}

bool boolean(const json& j, const char* key, bool dflt) {
  if (!given(j, key)) return dflt;
  if (!j[key].is_boolean()) refuse(key, std::string("'") + key + "' must be a boolean", "invalid_type");
  return j[key].get<bool>();
}

int64_t integer(const json& j, const char* key, int64_t lo, int64_t hi, int64_t dflt) {
  if (!given(j, key)) return dflt;
  if (!j[key].is_number_integer()) refuse(key, std::string("'") + key + "' must be an integer", "invalid_type");
  const int64_t v = j[key].get<int64_t>();
  if (v < lo || v > hi)
    refuse(key, std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

// Fields OpenAI defines that this server does not implement: present and not null/default → 400.
template <class J>
void refuse_unsupported(const J& j, std::initializer_list<const char*> keys) {
  for (const char* k : keys)
    if (given(j, k)) refuse(k, std::string("'") + k + "' is not supported by this server", "unsupported_parameter");
}

// The fields both endpoints share: sampling (the common validator), n, stream, user.
void read_common(const json& j, const ApiContext& ctx, ApiRequest& r) {
  r.model = model_name(j, ctx);
  r.params = ctx.defaults;
  const bool seeded = given(j, "seed");
  try {
    read_sampling_fields(j, r.params, ctx.vocab_size);
  } catch (const SamplingError& e) {
    refuse(e.field(), "'" + e.field() + "': " + e.message());
  }
  if (!seeded) r.params.seed = std::random_device{}() | (uint64_t(std::random_device{}()) << 32);
  r.n = integer(j, "n", 1, kMaxChoices, 1);
  r.stream = boolean(j, "stream", false);
  if (given(j, "stream_options")) {
    const json& so = j["stream_options"];
    if (!so.is_object()) refuse("stream_options", "'stream_options' must be an object", "invalid_type");
    if (!r.stream) refuse("stream_options", "'stream_options' is only allowed when 'stream' is true");
    r.include_usage = boolean(so, "include_usage", false);
  }
  if (given(j, "user") && !j["user"].is_string()) refuse("user", "'user' must be a string", "invalid_type");
  refuse_unsupported(j, {"prediction", "web_search_options", "audio", "reasoning_effort", "verbosity", "moderation"});
  if (given(j, "store") && boolean(j, "store", false)) refuse("store", "'store' is not supported by this server (no storage)");
}

std::string message_text(const ojson& m) {
  const ojson& c = m["content"];
  if (c.is_string()) return c.get<std::string>();
  if (c.is_null() && m.contains("tool_calls")) return "";  // an assistant message that only calls tools
  if (c.is_array()) {  // content parts: text only
    std::string text;
    for (const auto& part : c) {
      if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") ||
          !part["text"].is_string())
        refuse("messages", "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported", "invalid_type");
      text += part["text"].get<std::string>();
    }
    return text;
  }
  refuse("messages", "each message must have a string (or text-parts) 'content'", "invalid_type");
}

// `tools` and `tool_choice`: true when the tools go into the prompt (ApiRequest::tools_offered).
bool read_tools(const ojson& j, const ApiContext& ctx) {
  refuse_unsupported(j, {"functions", "function_call"});
  const bool can = ctx.chat->supports_tools();
  const std::string family = chat_family_name(ctx.chat->family());
  if (given(j, "tools") && !j["tools"].is_array()) refuse("tools", "'tools' must be an array", "invalid_type");
  const bool tools = given(j, "tools") && !j["tools"].empty();
  if (tools && !can)
    refuse("tools", "this model family (" + family + ") has no tool-call format: 'tools' cannot be honoured");
  if (tools)
    for (const auto& t : j["tools"])
      if (!t.is_object() || !t.contains("function") || !t["function"].is_object() || !t["function"].contains("name") ||
          !t["function"]["name"].is_string() || (t.contains("type") && t["type"] != "function"))
        refuse("tools", "each tool must be {\"type\": \"function\", \"function\": {\"name\": ..., ...}}", "invalid_type");
  std::string choice = "auto";
  if (given(j, "tool_choice")) {
    const ojson& c = j["tool_choice"];
    if (c.is_string() && (c == "none" || c == "auto")) choice = c.get<std::string>();
    else if (c.is_string() && c == "required")
      refuse("tool_choice", "tool_choice \"required\" is not supported (no constrained decoding): use \"auto\" or \"none\"");
    else if (c.is_object())
      refuse("tool_choice", "a named tool_choice is not supported (no constrained decoding): use \"auto\" or \"none\"");
    else
      refuse("tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or an object", "invalid_type");
    if (!can && choice != "none")
      refuse("tool_choice", "this model family (" + family + ") has no tool-call format: only tool_choice \"none\" is possible");
  }
  return tools && choice != "none";
}

// The chat prompt's ids: the OpenAI messages normalized (content parts joined, "developer" as
// "system") into the chat JSON `tokenize --chat` reads, then the family's prompt builder.
std::vector<int64_t> chat_prompt_ids(const ojson& j, const ApiContext& ctx, bool tools_offered) {
  if (!j.contains("messages")) refuse("messages", "'messages' is a required property", "missing_required_parameter");
  const ojson& msgs = j["messages"];
  if (!msgs.is_array() || msgs.empty()) refuse("messages", "'messages' must be a non-empty array", "invalid_type");
  ojson norm = ojson::array();
  for (const auto& m : msgs) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content"))
      refuse("messages", "each message must be an object with string 'role' and 'content'", "invalid_type");
    if (given(m, "tool_calls") && !ctx.chat->supports_tools())
      refuse("messages", "assistant 'tool_calls' messages need a model with tool calling");
    std::string role = m["role"].get<std::string>();
    if (role == "developer") role = "system";  // OpenAI's newer name for the system message
    ojson n = {{"role", role}, {"content", message_text(m)}};
    for (const char* k : {"metadata", "tool_calls"})
      if (given(m, k)) n[k] = m[k];
    norm.push_back(std::move(n));
  }
  std::vector<int64_t> ids;
  try {
    const std::vector<ChatMessage> messages = messages_from_json(norm, "messages");
    for (int id : ctx.chat->prompt_ids(messages, tools_offered ? j["tools"] : ojson(nullptr))) ids.push_back(id);
  } catch (const Error& e) {
    refuse("messages", std::string("invalid messages: ") + e.what());
  }
  return ids;
}

void read_response_format(const json& j) {
  if (!given(j, "response_format")) return;
  const json& f = j["response_format"];
  if (!f.is_object() || !f.contains("type") || !f["type"].is_string())
    refuse("response_format", "'response_format' must be an object with a string 'type'", "invalid_type");
  if (f["type"] != "text")
    refuse("response_format", "response_format type '" + f["type"].get<std::string>() +
                                  "' is not supported (no constrained decoding): only 'text'");
}

// A text prompt's ids (id prompts stay raw), checked as the official code does.
std::vector<int64_t> encode(const ApiContext& ctx, const std::string& text) {
  std::vector<int64_t> ids;
  for (int id : ctx.chat->text_ids(text)) ids.push_back(id);
  if (ctx.model)
    if (const std::string e = official_prompt_problem(*ctx.model, ids); !e.empty()) refuse("prompt", e);
  return ids;
}

ApiPrompt id_prompt(const json& a, const ApiContext& ctx) {
  ApiPrompt p;
  std::vector<int> ints;
  for (const auto& v : a) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || (ctx.vocab_size > 0 && v.get<int64_t>() >= ctx.vocab_size))
      refuse("prompt", "token id " + v.dump() + " is outside the vocabulary");
    p.ids.push_back(v.get<int64_t>());
    ints.push_back(v.get<int>());
  }
  if (p.ids.empty()) refuse("prompt", "an empty token list is not a prompt");
  p.text = ctx.chat->tokenizer().decode(ints);
  return p;
}

// prompt: a string, an array of strings, an array of token ids or an array of such arrays.
std::vector<ApiPrompt> completion_prompts(const json& j, const ApiContext& ctx) {
  if (!given(j, "prompt")) refuse("prompt", "'prompt' is a required property", "missing_required_parameter");
  const json& p = j["prompt"];
  std::vector<ApiPrompt> out;
  if (p.is_string()) {
    out.push_back({encode(ctx, p.get<std::string>()), p.get<std::string>()});
  } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
    out.push_back(id_prompt(p, ctx));
  } else if (p.is_array() && !p.empty()) {
    for (const auto& x : p) {
      if (x.is_string())
        out.push_back({encode(ctx, x.get<std::string>()), x.get<std::string>()});
      else if (x.is_array())
        out.push_back(id_prompt(x, ctx));
      else
        refuse("prompt", "'prompt' must be a string, an array of strings or of token-id arrays", "invalid_type");
    }
  } else {
    refuse("prompt", "'prompt' must be a non-empty string or array", "invalid_type");
  }
  return out;
}

}  // namespace

ApiRequest parse_chat_request(const std::string& body, const ApiContext& ctx) {
  const json j = parse_object(body);
  const ojson oj = ojson::parse(body);  // key order kept: the tools' JSON goes into the prompt as given
  ApiRequest r;
  r.endpoint = Endpoint::kChat;
  if (!oj.contains("messages")) refuse("messages", "'messages' is a required property", "missing_required_parameter");
  r.tools_offered = read_tools(oj, ctx);
  const std::vector<int64_t> prompt = chat_prompt_ids(oj, ctx, r.tools_offered);
  read_common(j, ctx, r);
  if (boolean(j, "logprobs", false)) {
    r.params.top_logprobs = integer(j, "top_logprobs", 0, kMaxTopLogprobs, 0);
  } else if (given(j, "top_logprobs")) {
    refuse("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  }
  read_response_format(j);
  if (given(j, "modalities") && !(j["modalities"].is_array() && j["modalities"].size() == 1 && j["modalities"][0] == "text"))
    refuse("modalities", "only the \"text\" modality is supported", "unsupported_parameter");
  if (given(j, "parallel_tool_calls") && !j["parallel_tool_calls"].is_boolean())
    refuse("parallel_tool_calls", "'parallel_tool_calls' must be a boolean", "invalid_type");
  if (ctx.model)
    if (const std::string e = official_prompt_problem(*ctx.model, prompt); !e.empty()) refuse("messages", e);
  r.prompts.push_back({prompt, ""});
  r.stop_ids = ctx.chat->stop_ids();
  return r;
}

ApiRequest parse_completion_request(const std::string& body, const ApiContext& ctx) {
  const json j = parse_object(body);
  ApiRequest r;
  r.endpoint = Endpoint::kCompletions;
  r.prompts = completion_prompts(j, ctx);
  read_common(j, ctx, r);
  if (given(j, "logprobs")) r.params.top_logprobs = integer(j, "logprobs", 0, kMaxTopLogprobs, 0);
  r.echo = boolean(j, "echo", false);
  if (r.echo && r.params.top_logprobs >= 0)
    refuse("echo", "'echo' with 'logprobs' (prompt-token logprobs) is not supported", "unsupported_parameter");
  if (given(j, "suffix") && !(j["suffix"].is_string() && j["suffix"].get<std::string>().empty()))
    refuse("suffix", "'suffix' (insertion) is not supported by this model", "unsupported_parameter");
  if (integer(j, "best_of", 1, kMaxChoices, 1) != 1) refuse("best_of", "'best_of' > 1 is not supported", "unsupported_parameter");
  r.stop_ids = ctx.chat->stop_ids();
  return r;
}

}  // namespace glmpipe
