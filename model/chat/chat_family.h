// ChatFamily: which chat format, special tokens and stop ids a checkpoint speaks. ChatGLM2-6B and
// ChatGLM3-6B share one architecture and one tokenizer.model file, and differ only here
// (chatglm2-family.md §2.1), so the family is decided from the checkpoint's other files:
//   the tokenizer file's kind: ice_text.model → chatglm, tiktoken ranks → glm4;
//   for the sentencepiece tokenizer.model, in order: tokenization_chatglm.py (ChatGLM3's defines
//   "<|observation|>"), tokenizer_config.json (ChatGLM3's names its role tokens), config.json
//   `_name_or_path` ("chatglm2" / "chatglm3"); with no evidence, chatglm3 (the one deployed today).
// A deployment may override it (`tokenizer: {chat_family: F}` / --chat-family); the choice and its reason are
// printed at start-up.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/tokenizer/text_tokenizer.h"

namespace glmpipe {

enum class ChatFamily { kChatGLM, kChatGLM2, kChatGLM3, kGLM4 };

const char* chat_family_name(ChatFamily f);  // "chatglm" | "chatglm2" | "chatglm3" | "glm4"
// Parses a name above; Error naming `where` and the accepted names otherwise.
ChatFamily parse_chat_family(const std::string& name, const std::string& where);
// The tokenizer kind a family's checkpoints ship (chatglm2 and chatglm3 share one).
TokenizerKind tokenizer_kind_of(ChatFamily f);

struct ChatFamilyChoice {
  ChatFamily family = ChatFamily::kChatGLM;
  std::string reason;  // e.g. "tokenization_chatglm.py defines <|observation|>"
};

// model_dir may be "" (a tokenizer file alone: decided from its kind). An override must fit the
// tokenizer kind (Error otherwise: e.g. glm4 with a sentencepiece file).
ChatFamilyChoice choose_chat_family(const std::string& model_dir, TokenizerKind kind,
                                    std::optional<ChatFamily> override_family = std::nullopt);

// The tokenizer file of a model directory: tokenizer.model, else ice_text.model; "" if neither.
std::string find_tokenizer_file(const std::string& model_dir);

// The ids generation stops on in a chat (chatglm2-family.md §2): chatglm <eop>; chatglm2 </s>;
// chatglm3 </s>, <|user|>, <|observation|>; glm4 <|endoftext|>, <|user|>, <|observation|>.
std::vector<int64_t> chat_stop_ids(ChatFamily f, const Tokenizer& tok);

}  // namespace glmpipe
