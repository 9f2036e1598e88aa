// The real ChatGLM2/3 and GLM-4 tokenizer files of ../shared/data and their chat formats, loaded
// once per test process, for tests of prompts, tools and tool calls. Tests that use them skip
// with a message when ../shared/data is absent (SKIP_WITHOUT).
#pragma once

#include <map>
#include <string>

#include "model/chat/chat_format.h"
#include "model/tokenizer/tokenizer_loader.h"
#include "tests/test_util.h"

namespace glmpipe::test {

inline std::string glm2_path() { return shared_data() + "/tokenizers/chatglm2-6b-tokenizer.model"; }
inline std::string glm4_path() { return shared_data() + "/tokenizers/glm-4-9b-tokenizer.model"; }

// ChatGLM2 / ChatGLM3 (role tokens) over the sentencepiece file, GLM-4 over the tiktoken file.
inline const ChatFormat& family_format(ChatFamily f) {
  static std::map<ChatFamily, ChatFormat> cache;
  auto it = cache.find(f);
  if (it == cache.end()) {
    const std::string path = f == ChatFamily::kGLM4 ? glm4_path() : glm2_path();
    it = cache.emplace(f, ChatFormat(load_tokenizer(path, f != ChatFamily::kChatGLM2), f)).first;
  }
  return it->second;
}

}  // namespace glmpipe::test

#define SKIP_WITHOUT(path) \
  if (!::glmpipe::test::file_exists(path)) GTEST_SKIP() << "needs " << (path) << " (../shared/data absent)"
