// The response side of the OpenAI-compatible API: completion bodies and stream chunks.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace glmpipe {

// One chat.completion.chunk with a single choice (index 0).
nlohmann::json chat_chunk(const std::string& id, const std::string& model, const nlohmann::json& delta,
                          const nlohmann::json& finish_reason);

// A non-streamed chat.completion with one assistant message and its usage.
nlohmann::json chat_completion(const std::string& id, const std::string& model, const std::string& content,
                               const std::string& finish_reason, int64_t prompt_tokens, int64_t completion_tokens);

}  // namespace glmpipe
