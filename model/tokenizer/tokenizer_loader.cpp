#include "model/tokenizer/tokenizer_loader.h"

#include <cctype>
#include <fstream>

#include "common/error.h"
#include "model/tokenizer.h"
#include "model/tokenizer/chatglm2_tokenizer.h"
#include "model/tokenizer/glm4_tokenizer.h"
#include "model/tokenizer/spm_processor.h"

namespace glmpipe {

const char* tokenizer_kind_name(TokenizerKind k) {
  switch (k) {
    case TokenizerKind::kChatGLM6B: return "ChatGLM-6B sentencepiece (ice_text.model)";
    case TokenizerKind::kChatGLM2Spm: return "ChatGLM2/ChatGLM3 sentencepiece (tokenizer.model)";
    case TokenizerKind::kGlm4Tiktoken: return "GLM-4 tiktoken BPE ranks (tokenizer.model)";
  }
  return "?";
}

namespace {

// A tiktoken rank file starts with "<base64> <digits>\n".
bool looks_like_tiktoken(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::string line;
  if (!std::getline(f, line)) return false;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const auto sp = line.find(' ');
  if (sp == 0 || sp == std::string::npos || sp + 1 == line.size()) return false;
  for (size_t i = 0; i < sp; ++i) {
    const char c = line[i];
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=')) return false;
  }
  for (size_t i = sp + 1; i < line.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(line[i]))) return false;
  return true;
}

}  // namespace

TokenizerKind detect_tokenizer_kind(const std::string& path) {
  GLMPIPE_CHECK(std::ifstream(path).good()) << "tokenizer model " << path << " does not exist";
  if (looks_like_tiktoken(path)) return TokenizerKind::kGlm4Tiktoken;
  SpmProcessor sp;
  try {
    sp = SpmProcessor::load(path);
  } catch (const Error& e) {
    GLMPIPE_FAIL() << "tokenizer " << path
                   << " is neither a tiktoken rank file (base64 rank lines) nor a sentencepiece model: " << e.what();
  }
  return sp.piece_to_id("[gMASK]") >= 0 ? TokenizerKind::kChatGLM6B : TokenizerKind::kChatGLM2Spm;
}

std::shared_ptr<const Tokenizer> load_tokenizer(const std::string& path, bool chatglm3_roles) {
  switch (detect_tokenizer_kind(path)) {
    case TokenizerKind::kChatGLM6B:
      return std::make_shared<ChatGLMTokenizer>(ChatGLMTokenizer::load(path));
    case TokenizerKind::kChatGLM2Spm:
      return std::make_shared<ChatGLM2Tokenizer>(ChatGLM2Tokenizer::load(path, chatglm3_roles));
    case TokenizerKind::kGlm4Tiktoken:
      return std::make_shared<Glm4Tokenizer>(Glm4Tokenizer::load(path));
  }
  GLMPIPE_FAIL() << "tokenizer " << path << ": unknown kind";
  return nullptr;  // not reached
}

}  // namespace glmpipe
