#include "launcher/openai_request.h"

#include <random>
#include <vector>

#include "common/error.h"
#include "model/chat_prompt.h"

namespace glmpipe {

using json = nlohmann::json;

json error_body(const ApiError& e) {
  json err = {{"message", e.message}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  return json{{"error", err}};
}

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

ChatRequest parse_chat_request(const std::string& body, const ApiContext& ctx) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    throw ApiError{400, std::string("malformed JSON body: ") + e.what(), "", "invalid_json"};
  }
  if (!j.is_object()) throw ApiError{400, "the request body must be a JSON object", "", "invalid_json"};
  if (j.contains("model") && !j["model"].is_null()) {
    if (!j["model"].is_string()) throw ApiError{400, "'model' must be a string", "model", "invalid_type"};
    if (j["model"].get<std::string>() != ctx.model_id)
      throw ApiError{404, "The model '" + j["model"].get<std::string>() + "' does not exist (this server serves '" +
                              ctx.model_id + "')",
                     "model", "model_not_found"};
  }
  if (!j.contains("messages")) throw ApiError{400, "'messages' is a required property", "messages", "missing_required_parameter"};
  const json& msgs = j["messages"];
  if (!msgs.is_array() || msgs.empty())
    throw ApiError{400, "'messages' must be a non-empty array", "messages", "invalid_type"};
  std::vector<ChatMessage> messages;
  for (const auto& m : msgs) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string())
      throw ApiError{400, "each message must be an object with string 'role' and 'content'", "messages", "invalid_type"};
    messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  std::string prompt;
  try {
    prompt = build_prompt_from_messages(messages);
  } catch (const Error& e) {
    throw ApiError{400, std::string("invalid messages: ") + e.what(), "messages", "invalid_value"};
  }
  SamplingParams p = ctx.defaults;
  p.seed = std::random_device{}();
  auto number = [&](const char* key, double& out) {
    if (!j.contains(key) || j[key].is_null()) return false;
    if (!j[key].is_number()) throw ApiError{400, std::string("'") + key + "' must be a number", key, "invalid_type"};
    out = j[key].get<double>();
    return true;
  };
  double t = 0;
  if (number("temperature", t)) {
    if (!(t >= 0)) throw ApiError{400, "'temperature' must be >= 0", "temperature", "invalid_value"};
    p.temperature = t;
    p.greedy = t == 0;
  }
  double tp = 0;
  if (number("top_p", tp)) {
    if (!(tp > 0 && tp <= 1)) throw ApiError{400, "'top_p' must be in (0, 1]", "top_p", "invalid_value"};
    p.top_p = tp;
  }
  if (j.contains("max_tokens") && !j["max_tokens"].is_null()) {
    if (!j["max_tokens"].is_number_integer())
      throw ApiError{400, "'max_tokens' must be an integer", "max_tokens", "invalid_type"};
    const int64_t mt = j["max_tokens"].get<int64_t>();
    if (mt <= 0) throw ApiError{400, "'max_tokens' must be > 0", "max_tokens", "invalid_value"};
    p.max_new_tokens = mt;
  }
  if (j.contains("seed") && !j["seed"].is_null()) {
    if (!j["seed"].is_number_integer() || j["seed"].get<int64_t>() < 0)
      throw ApiError{400, "'seed' must be a non-negative integer", "seed", "invalid_type"};
    p.seed = j["seed"].get<uint64_t>();
  }
  if (j.contains("n") && !j["n"].is_null() && !(j["n"].is_number_integer() && j["n"].get<int64_t>() == 1))
    throw ApiError{400, "only n = 1 is supported", "n", "invalid_value"};
  ChatRequest out;
  if (j.contains("stream") && !j["stream"].is_null()) {
    if (!j["stream"].is_boolean()) throw ApiError{400, "'stream' must be a boolean", "stream", "invalid_type"};
    out.stream = j["stream"].get<bool>();
  }
  out.request.params = p;
  for (int id : ctx.tokenizer->encode(prompt)) out.request.input_ids.push_back(id);
  return out;
}

}  // namespace glmpipe
