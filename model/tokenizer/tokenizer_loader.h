// Which kind of tokenizer a file is, from its content (never from its name: ChatGLM2/3 and GLM-4
// both call theirs tokenizer.model), and loading it as such.
//   a line "base64 rank" first            → kGlm4Tiktoken
//   a sentencepiece model with [gMASK]    → kChatGLM6B (ice_text.model)
//   any other sentencepiece model         → kChatGLM2Spm
#pragma once

#include <memory>
#include <string>

#include "model/tokenizer/text_tokenizer.h"

namespace glmpipe {

// Throws glmpipe::Error naming the path when the file is missing or is neither kind.
TokenizerKind detect_tokenizer_kind(const std::string& path);

// chatglm3_roles matters for kChatGLM2Spm only: ChatGLM3's role tokens (64794..64797) exist.
std::shared_ptr<const Tokenizer> load_tokenizer(const std::string& path, bool chatglm3_roles = true);

}  // namespace glmpipe
