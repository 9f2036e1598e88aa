// load_chat_format (model/chat/chat_format.h): a file of its own because it is the one part of the
// chat formats that loads tokenizer files (sentencepiece through the shim, GLM-4 with PCRE2); the
// fuzz build (tests/fuzz) links the rest of model/chat/ over a stub tokenizer.
#include "common/error.h"
#include "model/chat/chat_format.h"
#include "model/tokenizer/tokenizer_loader.h"

namespace glmpipe {

LoadedChatFormat load_chat_format(const std::string& model_dir, const std::string& tokenizer_path,
                                  std::optional<ChatFamily> family_override) {
  std::string path = tokenizer_path;
  if (path.empty()) {
    path = find_tokenizer_file(model_dir);
    GLMPIPE_CHECK(!path.empty()) << "model directory " << model_dir
                                 << " has no tokenizer.model or ice_text.model (give --tokenizer)";
  }
  const TokenizerKind kind = detect_tokenizer_kind(path);
  const ChatFamilyChoice choice = choose_chat_family(model_dir, kind, family_override);
  auto tok = load_tokenizer(path, /*chatglm3_roles=*/choice.family != ChatFamily::kChatGLM2);
  return LoadedChatFormat{ChatFormat(tok, choice.family), path, choice.reason};
}

}  // namespace glmpipe
