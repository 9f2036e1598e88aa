#include "model/chat/chat_format.h"

#include <algorithm>

#include "common/error.h"
#include "model/chat/family_chats.h"
#include "model/chat/text_util.h"
#include "model/chat_prompt.h"

namespace glmpipe {

ChatFormat::ChatFormat(std::shared_ptr<const Tokenizer> tokenizer, ChatFamily family)
    : tok_(std::move(tokenizer)), family_(family) {
  GLMPIPE_CHECK(tokenizer_kind_of(family) == tok_->kind())
      << "chat family " << chat_family_name(family) << " does not fit tokenizer " << tok_->file_path() << " ("
      << tokenizer_kind_name(tok_->kind()) << ")";
  stop_ids_ = chat_stop_ids(family, *tok_);
}

std::vector<int> ChatFormat::prompt_ids(const std::vector<ChatMessage>& messages,
                                        const nlohmann::ordered_json& tools) const {
  const bool with_tools = tools.is_array() && !tools.empty();
  GLMPIPE_CHECK(!with_tools || supports_tools())
      << "tools: chat family " << chat_family_name(family_) << " has no tool calling (chatglm3 and glm4 do)";
  switch (family_) {
    case ChatFamily::kChatGLM: return tok_->encode(build_prompt_from_messages(messages), true);
    case ChatFamily::kChatGLM2: return chatglm2_prompt_ids(*tok_, messages);
    case ChatFamily::kChatGLM3: return chatglm3_prompt_ids(*tok_, messages, tools);
    case ChatFamily::kGLM4: return glm4_prompt_ids(*tok_, messages, tools);
  }
  return {};
}

bool ChatFormat::is_stop(int64_t id) const {
  return std::find(stop_ids_.begin(), stop_ids_.end(), id) != stop_ids_.end();
}

ChatReply ChatFormat::parse_reply(std::vector<int> ids, bool tools_offered) const {
  if (!ids.empty() && is_stop(ids.back())) ids.pop_back();
  switch (family_) {
    case ChatFamily::kChatGLM: return {postprocess_response(tok_->decode(ids)), {}};
    case ChatFamily::kChatGLM2: return chatglm2_parse_reply(*tok_, ids);
    case ChatFamily::kChatGLM3: return chatglm3_parse_reply(*tok_, ids, tools_offered);
    case ChatFamily::kGLM4: return glm4_parse_reply(*tok_, ids, tools_offered);
  }
  return {};
}

std::string ChatFormat::reply_text(const std::string& text) const {
  if (family_ == ChatFamily::kChatGLM) return postprocess_response(text);
  std::string out = py_strip(text);
  replace_all_in(out, "[[训练时间]]", "2023年");
  return out;
}

std::string official_prompt_problem(const ModelConfig& cfg, const std::vector<int64_t>& ids) {
  if (cfg.family != Family::kChatGLM) return "";
  auto has = [&](int64_t id) { return id >= 0 && std::find(ids.begin(), ids.end(), id) != ids.end(); };
  if (!has(cfg.gmask_token_id) && !has(cfg.mask_token_id))
    return "the prompt has neither [MASK] (id " + std::to_string(cfg.mask_token_id) + ") nor [gMASK] (id " +
           std::to_string(cfg.gmask_token_id) +
           ") of config.json, which ChatGLM-6B needs (does the tokenizer belong to this model?)";
  if (!has(cfg.bos_token_id))
    return "the prompt has no <sop> (bos_token_id " + std::to_string(cfg.bos_token_id) +
           " of config.json), which ChatGLM-6B needs (does the tokenizer belong to this model?)";
  return "";
}

}  // namespace glmpipe
