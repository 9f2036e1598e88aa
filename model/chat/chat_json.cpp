#include "model/chat/chat_json.h"

#include "common/error.h"

namespace glmpipe {

using ojson = nlohmann::ordered_json;

namespace {

std::string string_field(const ojson& obj, const char* key, const std::string& where, bool required) {
  if (!obj.contains(key) || obj[key].is_null()) {
    GLMPIPE_CHECK(!required) << where << "." << key << ": missing";
    return "";
  }
  GLMPIPE_CHECK(obj[key].is_string()) << where << "." << key << ": expected a string";
  return obj[key].get<std::string>();
}

ToolCall tool_call_from_json(const ojson& c, const std::string& where) {
  GLMPIPE_CHECK(c.is_object() && c.contains("function") && c["function"].is_object())
      << where << ": expected {\"type\": \"function\", \"function\": {\"name\", \"arguments\"}}";
  const ojson& fn = c["function"];
  ToolCall call;
  call.name = string_field(fn, "name", where + ".function", true);
  if (fn.contains("arguments") && fn["arguments"].is_object())
    call.arguments = fn["arguments"].dump(-1, ' ', false, nlohmann::detail::error_handler_t::replace);
  else
    call.arguments = string_field(fn, "arguments", where + ".function", false);
  call.id = string_field(c, "id", where, false);
  return call;
}

}  // namespace

std::vector<ChatMessage> messages_from_json(const ojson& messages, const std::string& where) {
  GLMPIPE_CHECK(messages.is_array() && !messages.empty()) << where << ": expected a non-empty list of messages";
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string w = where + "[" + std::to_string(i) + "]";
    const ojson& m = messages[i];
    GLMPIPE_CHECK(m.is_object()) << w << ": expected an object";
    ChatMessage msg;
    msg.role = string_field(m, "role", w, true);
    msg.content = string_field(m, "content", w, false);
    msg.metadata = string_field(m, "metadata", w, false);
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      GLMPIPE_CHECK(m["tool_calls"].is_array()) << w << ".tool_calls: expected a list";
      for (size_t k = 0; k < m["tool_calls"].size(); ++k)
        msg.tool_calls.push_back(tool_call_from_json(m["tool_calls"][k], w + ".tool_calls[" + std::to_string(k) + "]"));
    }
    out.push_back(std::move(msg));
  }
  return out;
}

ChatInput chat_input_from_json(const ojson& body, const std::string& where) {
  GLMPIPE_CHECK(body.is_object() && body.contains("messages")) << where << ": expected {\"messages\": [...]}";
  ChatInput in;
  in.messages = messages_from_json(body["messages"], where + ": messages");
  if (body.contains("tools") && !body["tools"].is_null()) {
    GLMPIPE_CHECK(body["tools"].is_array()) << where << ": tools: expected a list";
    in.tools = body["tools"];
  }
  // GLM-4's native form: tools on a message.
  for (const auto& m : body["messages"])
    if (m.is_object() && m.contains("tools") && m["tools"].is_array())
      for (const auto& t : m["tools"]) in.tools.push_back(t);
  return in;
}

}  // namespace glmpipe
