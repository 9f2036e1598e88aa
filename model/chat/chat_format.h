// ChatFormat: a tokenizer and the chat family it serves, i.e. everything chat, serve, batch and
// generate --prompt need to turn messages into prompt ids, know when to stop, and read the reply.
//
//   auto cf = load_chat_format(model_dir, /*tokenizer=*/"", /*family=*/std::nullopt);
//   std::vector<int> ids = cf.format.prompt_ids({{"user", "你好"}});  // glm4: [151331, 151333, 151336, 198, 109377, 151337]
//   request.stop_ids = cf.format.stop_ids();                            // glm4: 151329, 151336, 151338
//   ChatReply r = cf.format.parse_reply(generated_ids, /*tools_offered=*/false);
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/chat/chat_family.h"
#include "model/chat/chat_message.h"
#include "model/model_config.h"
#include "model/tokenizer/text_tokenizer.h"

namespace glmpipe {

class ChatFormat {
 public:
  // Error if the family does not fit the tokenizer's kind.
  ChatFormat(std::shared_ptr<const Tokenizer> tokenizer, ChatFamily family);

  ChatFamily family() const { return family_; }
  const Tokenizer& tokenizer() const { return *tok_; }
  const std::shared_ptr<const Tokenizer>& tokenizer_ptr() const { return tok_; }
  bool supports_tools() const { return family_ == ChatFamily::kChatGLM3 || family_ == ChatFamily::kGLM4; }

  // The whole prompt, generation prompt included (model/chat/family_chats.h). `tools` (a JSON
  // list, may be null/empty) needs a family with tool calling (Error otherwise).
  std::vector<int> prompt_ids(const std::vector<ChatMessage>& messages,
                              const nlohmann::ordered_json& tools = nullptr) const;
  // A plain prompt (generate --prompt, batch "prompt"): the official encode(text).
  std::vector<int> text_ids(const std::string& text) const { return tok_->encode(text, true); }
  std::vector<int64_t> stop_ids() const { return stop_ids_; }
  bool is_stop(int64_t id) const;
  // The reply of generated ids (a trailing stop id is ignored), parsed the family's way.
  ChatReply parse_reply(std::vector<int> ids, bool tools_offered) const;
  // The family's clean-up of reply text that was cut before a stop string (no tool-call parsing):
  // v1 postprocess_response, v2+ strip and the "[[训练时间]]" fix.
  std::string reply_text(const std::string& text) const;

 private:
  std::shared_ptr<const Tokenizer> tok_;
  ChatFamily family_;
  std::vector<int64_t> stop_ids_;
};

// The official ChatGLM-6B (v1) code raises on a prompt with neither [MASK] nor [gMASK], or without
// <sop> (modeling_chatglm.py: seq.index(mask_token), seq.index(bos_token_id)), e.g. when the
// tokenizer does not fit the model's config.json. Text prompts (generate --prompt, chat, serve,
// batch) are checked the same way; --ids and id prompts stay raw. "" when `ids` are fine (always
// for the other families, whose official code has no such check), else what is wrong.
std::string official_prompt_problem(const ModelConfig& cfg, const std::vector<int64_t>& ids);

struct LoadedChatFormat {
  ChatFormat format;
  std::string tokenizer_path;
  std::string family_reason;  // why this family (printed at start-up)
};

// The tokenizer `tokenizer_path` (or the model directory's, find_tokenizer_file) and the chat
// family choose_chat_family() decides. Error naming the directory when it has no tokenizer.
LoadedChatFormat load_chat_format(const std::string& model_dir, const std::string& tokenizer_path,
                                  std::optional<ChatFamily> family_override);

}  // namespace glmpipe
