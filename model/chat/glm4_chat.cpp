#include "common/error.h"
#include "model/chat/family_chats.h"
#include "model/chat/text_util.h"
#include "model/chat/tool_prompt.h"

namespace glmpipe {

namespace {

using ojson = nlohmann::ordered_json;

int special(const Tokenizer& tok, const std::string& name) {
  const int id = tok.special_id(name);
  GLMPIPE_CHECK(id >= 0) << "tokenizer " << tok.file_path() << " has no " << name << " (not a GLM-4 tokenizer?)";
  return id;
}

// {% if item['content'] %}<|role|>{metadata}\n{content}{% endif %}: one text chunk after the role.
void append_message(std::vector<int>& ids, const Tokenizer& tok, const std::string& role,
                    const std::string& metadata, const std::string& content) {
  if (content.empty()) return;
  ids.push_back(special(tok, "<|" + role + "|>"));
  for (int id : tok.encode_text(metadata + "\n" + content)) ids.push_back(id);
}

}  // namespace

std::vector<int> glm4_prompt_ids(const Tokenizer& tok, const std::vector<ChatMessage>& messages, const ojson& tools) {
  GLMPIPE_CHECK(!messages.empty()) << "chat messages: empty list";
  std::vector<int> ids = {special(tok, "[gMASK]"), special(tok, "<sop>")};
  if (tools.is_array() && !tools.empty()) {
    ids.push_back(special(tok, "<|system|>"));
    for (int id : tok.encode_text(glm4_tool_system_text(tools))) ids.push_back(id);
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const std::string role = normalized_role(m.role, i, /*observation_allowed=*/true);
    append_message(ids, tok, role, m.metadata, m.content);
    if (role == "assistant")
      for (const ToolCall& c : m.tool_calls) append_message(ids, tok, role, c.name, c.arguments.empty() ? "{}" : c.arguments);
  }
  ids.push_back(special(tok, "<|assistant|>"));
  return ids;
}

ChatReply glm4_parse_reply(const Tokenizer& tok, const std::vector<int>& ids, bool tools_offered) {
  const std::vector<std::string> parts = py_split(tok.decode(ids, /*keep_specials=*/true), "<|assistant|>");
  const std::string& last = parts.back();
  const size_t nl = last.find('\n');
  const std::string metadata = nl == std::string::npos ? "" : last.substr(0, nl);
  std::string content = nl == std::string::npos ? last : last.substr(nl + 1);
  if (!py_strip(metadata).empty() && tools_offered) {
    const ojson args = ojson::parse(py_strip(content), nullptr, /*allow_exceptions=*/false);
    if (!args.is_discarded() && args.is_object())
      return {"", {ToolCall{py_strip(metadata), args.dump(-1, ' ', false, nlohmann::detail::error_handler_t::replace), ""}}};
  }
  content = py_strip(py_strip(metadata).empty() ? content : last);
  replace_all_in(content, "[[训练时间]]", "2023年");
  return {content, {}};
}

}  // namespace glmpipe
