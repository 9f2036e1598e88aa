// One OpenAI-style chat message, as every family's prompt builder reads it.
#pragma once

#include <string>
#include <vector>

namespace glmpipe {

// A structured tool call: the function's name and its arguments as a JSON object text.
struct ToolCall {
  std::string name;
  std::string arguments;  // JSON text, e.g. {"city": "北京"}
  std::string id;         // OpenAI tool_call id ("" when the model made it: serve assigns one)
};

struct ChatMessage {
  // "system", "user", "assistant"; ChatGLM3/GLM-4 also "observation" (a tool's result; OpenAI's
  // "tool" and "function" roles map to it).
  std::string role;
  std::string content;
  // ChatGLM3/GLM-4: the text after the role token on its first line (an assistant message's tool
  // name); "" otherwise.
  std::string metadata = {};
  std::vector<ToolCall> tool_calls = {};  // an assistant message's calls (OpenAI `tool_calls`)
};

// What the model answered, parsed the family's way: text, or tool calls (then content is the text
// before them, usually "").
struct ChatReply {
  std::string content;
  std::vector<ToolCall> tool_calls;
};

}  // namespace glmpipe
