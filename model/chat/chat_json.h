// OpenAI-style chat JSON → ChatMessage list and tools (for `tokenize --chat`, batch and serve).
//   {"messages": [{"role": "user", "content": "…"},
//                 {"role": "assistant", "content": null,
//                  "tool_calls": [{"id": "…", "type": "function",
//                                  "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
//                 {"role": "tool", "tool_call_id": "…", "content": "…"}],
//    "tools": [{"type": "function", "function": {"name": "f", "parameters": {…}}}]}
// A message may also carry ChatGLM's own "metadata" string, and (GLM-4's native form) "tools".
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "model/chat/chat_message.h"

namespace glmpipe {

struct ChatInput {
  std::vector<ChatMessage> messages;
  nlohmann::ordered_json tools = nlohmann::ordered_json::array();
};

// Throws glmpipe::Error naming `where` and the offending field (e.g. "chat.json: messages[2].content").
ChatInput chat_input_from_json(const nlohmann::ordered_json& body, const std::string& where);
std::vector<ChatMessage> messages_from_json(const nlohmann::ordered_json& messages, const std::string& where);

}  // namespace glmpipe
