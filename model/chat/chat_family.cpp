#include "model/chat/chat_family.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"

namespace glmpipe {

const char* chat_family_name(ChatFamily f) {
  switch (f) {
    case ChatFamily::kChatGLM: return "chatglm";
    case ChatFamily::kChatGLM2: return "chatglm2";
    case ChatFamily::kChatGLM3: return "chatglm3";
    case ChatFamily::kGLM4: return "glm4";
  }
  return "?";
}

ChatFamily parse_chat_family(const std::string& name, const std::string& where) {
  for (ChatFamily f : {ChatFamily::kChatGLM, ChatFamily::kChatGLM2, ChatFamily::kChatGLM3, ChatFamily::kGLM4})
    if (name == chat_family_name(f)) return f;
  GLMPIPE_FAIL() << where << ": unknown chat family '" << name << "' (expected chatglm, chatglm2, chatglm3 or glm4)";
  return ChatFamily::kChatGLM;  // not reached
}

TokenizerKind tokenizer_kind_of(ChatFamily f) {
  switch (f) {
    case ChatFamily::kChatGLM: return TokenizerKind::kChatGLM6B;
    case ChatFamily::kChatGLM2:
    case ChatFamily::kChatGLM3: return TokenizerKind::kChatGLM2Spm;
    case ChatFamily::kGLM4: return TokenizerKind::kGlm4Tiktoken;
  }
  return TokenizerKind::kChatGLM6B;
}

namespace {

bool read_text(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return true;
}

// ChatGLM2 vs ChatGLM3 from the files beside the weights; nullopt when none says.
std::optional<ChatFamilyChoice> sentencepiece_family_from_files(const std::string& dir) {
  std::string text;
  if (read_text(dir + "/tokenization_chatglm.py", text)) {
    if (text.find("<|observation|>") != std::string::npos)
      return ChatFamilyChoice{ChatFamily::kChatGLM3, "tokenization_chatglm.py defines <|observation|>"};
    return ChatFamilyChoice{ChatFamily::kChatGLM2, "tokenization_chatglm.py has no role tokens"};
  }
  if (read_text(dir + "/tokenizer_config.json", text) && text.find("<|user|>") != std::string::npos)
    return ChatFamilyChoice{ChatFamily::kChatGLM3, "tokenizer_config.json names <|user|>"};
  if (read_text(dir + "/config.json", text)) {
    const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("_name_or_path") && j["_name_or_path"].is_string()) {
      const std::string name = j["_name_or_path"];
      if (name.find("chatglm3") != std::string::npos)
        return ChatFamilyChoice{ChatFamily::kChatGLM3, "config.json _name_or_path is " + name};
      if (name.find("chatglm2") != std::string::npos)
        return ChatFamilyChoice{ChatFamily::kChatGLM2, "config.json _name_or_path is " + name};
    }
  }
  return std::nullopt;
}

}  // namespace

ChatFamilyChoice choose_chat_family(const std::string& model_dir, TokenizerKind kind,
                                    std::optional<ChatFamily> override_family) {
  if (override_family) {
    GLMPIPE_CHECK(tokenizer_kind_of(*override_family) == kind)
        << "chat family " << chat_family_name(*override_family) << " does not fit the tokenizer ("
        << tokenizer_kind_name(kind) << ")";
    return {*override_family, "given (--family, --chat-family or tokenizer.chat_family)"};
  }
  switch (kind) {
    case TokenizerKind::kChatGLM6B: return {ChatFamily::kChatGLM, "the tokenizer is ChatGLM-6B's ice_text.model"};
    case TokenizerKind::kGlm4Tiktoken: return {ChatFamily::kGLM4, "the tokenizer is GLM-4's tiktoken file"};
    case TokenizerKind::kChatGLM2Spm: break;
  }
  if (!model_dir.empty())
    if (auto c = sentencepiece_family_from_files(model_dir)) return *c;
  return {ChatFamily::kChatGLM3,
          "ChatGLM2/3 tokenizer and no file says which: chatglm3 assumed (--chat-family or tokenizer: {chat_family: chatglm2} for ChatGLM2)"};
}

std::string find_tokenizer_file(const std::string& model_dir) {
  for (const char* name : {"tokenizer.model", "ice_text.model"}) {
    const std::string p = model_dir + "/" + name;
    if (std::ifstream(p).good()) return p;
  }
  return "";
}

std::vector<int64_t> chat_stop_ids(ChatFamily f, const Tokenizer& tok) {
  std::vector<const char*> names;
  switch (f) {
    case ChatFamily::kChatGLM: names = {"<eop>"}; break;
    case ChatFamily::kChatGLM2: names = {"</s>"}; break;
    case ChatFamily::kChatGLM3: names = {"</s>", "<|user|>", "<|observation|>"}; break;
    case ChatFamily::kGLM4: names = {"<|endoftext|>", "<|user|>", "<|observation|>"}; break;
  }
  std::vector<int64_t> ids;
  for (const char* n : names) {
    const int id = tok.special_id(n);
    GLMPIPE_CHECK(id >= 0) << "tokenizer " << tok.file_path() << " has no " << n << " (chat family "
                           << chat_family_name(f) << ")";
    ids.push_back(id);
  }
  return ids;
}

}  // namespace glmpipe
