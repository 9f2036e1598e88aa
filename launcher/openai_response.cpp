#include "launcher/openai_response.h"

#include <ctime>

namespace glmpipe {

using json = nlohmann::json;

namespace {
int64_t now_s() { return static_cast<int64_t>(std::time(nullptr)); }
}  // namespace

json chat_chunk(const std::string& id, const std::string& model, const json& delta, const json& finish_reason) {
  return json{{"id", id},
              {"object", "chat.completion.chunk"},
              {"created", now_s()},
              {"model", model},
              {"choices", json::array({json{{"index", 0}, {"delta", delta}, {"finish_reason", finish_reason}}})}};
}

json chat_completion(const std::string& id, const std::string& model, const std::string& content,
                     const std::string& finish_reason, int64_t prompt_tokens, int64_t completion_tokens) {
  return json{{"id", id},
              {"object", "chat.completion"},
              {"created", now_s()},
              {"model", model},
              {"choices", json::array({json{{"index", 0},
                                            {"message", {{"role", "assistant"}, {"content", content}}},
                                            {"finish_reason", finish_reason}}})},
              {"usage", {{"prompt_tokens", prompt_tokens},
                         {"completion_tokens", completion_tokens},
                         {"total_tokens", prompt_tokens + completion_tokens}}}};
}

}  // namespace glmpipe
