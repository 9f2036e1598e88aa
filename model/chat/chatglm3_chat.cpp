#include "common/error.h"
#include "model/chat/family_chats.h"
#include "model/chat/python_literal.h"
#include "model/chat/text_util.h"
#include "model/chat/tool_prompt.h"

namespace glmpipe {

namespace {

using ojson = nlohmann::ordered_json;

int role_id(const Tokenizer& tok, const std::string& role) {
  const int id = tok.special_id("<|" + role + "|>");
  GLMPIPE_CHECK(id >= 0) << "tokenizer " << tok.file_path() << " has no <|" << role
                         << "|> token (not a ChatGLM3 tokenizer?)";
  return id;
}

// build_single_message: <|role|> + sp(metadata + "\n") + sp(content).
void append_message(std::vector<int>& ids, const Tokenizer& tok, const std::string& role,
                    const std::string& metadata, const std::string& content) {
  ids.push_back(role_id(tok, role));
  for (int id : tok.encode_text(metadata + "\n")) ids.push_back(id);
  for (int id : tok.encode_text(content)) ids.push_back(id);
}

// An OpenAI call replayed as ChatGLM3 wrote it: ```python\ntool_call(k=v, …)\n```.
std::string python_call_block(const ToolCall& call) {
  ojson args = ojson::parse(call.arguments.empty() ? "{}" : call.arguments, nullptr, false);
  GLMPIPE_CHECK(!args.is_discarded() && args.is_object())
      << "tool call " << call.name << ": arguments are not a JSON object: " << call.arguments;
  return "```python\n" + python_kwargs_call(args) + "\n```";
}

}  // namespace

std::vector<int> chatglm3_prompt_ids(const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                                     const ojson& tools) {
  GLMPIPE_CHECK(!messages.empty()) << "chat messages: empty list";
  std::vector<int> ids = {tok.special_id("[gMASK]"), tok.special_id("sop")};
  size_t first = 0;
  const bool with_tools = tools.is_array() && !tools.empty();
  if (with_tools) {
    const bool own_system = messages[0].role == "system";
    append_message(ids, tok, "system", "",
                   chatglm3_tool_system_content(own_system ? messages[0].content : kChatGLM3ToolSystem, tools));
    first = own_system ? 1 : 0;
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const std::string role = normalized_role(m.role, i, /*observation_allowed=*/true);
    if (role == "assistant" && !m.tool_calls.empty()) {
      if (!m.content.empty()) append_message(ids, tok, role, m.metadata, m.content);
      for (const ToolCall& c : m.tool_calls) append_message(ids, tok, role, c.name, python_call_block(c));
      continue;
    }
    append_message(ids, tok, role, m.metadata, m.content);
  }
  ids.push_back(role_id(tok, "assistant"));
  return ids;
}

ChatReply chatglm3_parse_reply(const Tokenizer& tok, const std::vector<int>& ids, bool tools_offered) {
  const std::vector<std::string> parts = py_split(tok.decode(ids, /*keep_specials=*/true), "<|assistant|>");
  // HF keeps the last part's result; a part without "\n" has no metadata line.
  const std::string& last = parts.back();
  const size_t nl = last.find('\n');
  const std::string metadata = nl == std::string::npos ? "" : last.substr(0, nl);
  std::string content = nl == std::string::npos ? last : last.substr(nl + 1);
  if (py_strip(metadata).empty() || !tools_offered) {
    content = py_strip(py_strip(metadata).empty() ? content : last);
    replace_all_in(content, "[[训练时间]]", "2023年");
    return {content, {}};
  }
  // The body is ```python\ntool_call(...)\n```: HF drops its first and last line.
  std::vector<std::string> lines = py_split(content, "\n");
  std::string code;
  for (size_t i = 1; i + 1 < lines.size(); ++i) code += (i > 1 ? "\n" : "") + lines[i];
  try {
    const ojson args = parse_python_kwargs_call(code);
    return {"", {ToolCall{py_strip(metadata), args.dump(-1, ' ', false, nlohmann::detail::error_handler_t::replace), ""}}};
  } catch (const Error&) {
    return {py_strip(last), {}};  // not a call we can read: the text as the model wrote it
  }
}

}  // namespace glmpipe
