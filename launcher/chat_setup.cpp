#include "launcher/chat_setup.h"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "launcher/session.h"
#include "model/tokenizer/tokenizer_loader.h"

namespace glmpipe {

void add_tokenizer_flags(CLI::App& app, TokenizerFlags& f) {
  app.add_option("--tokenizer", f.tokenizer,
                 "tokenizer file (default: tokenizer.path, else MODEL_DIR/tokenizer.model, else MODEL_DIR/ice_text.model)");
  app.add_option("--chat-family", f.chat_family,
                 "chatglm | chatglm2 | chatglm3 | glm4 (default: tokenizer.chat_family, else from the checkpoint's files)");
}

bool session_has_tokenizer(const Session& session, const TokenizerFlags& f) {
  return !f.tokenizer.empty() || !session.deployment().tokenizer.path.empty() ||
         !find_tokenizer_file(session.model_dir()).empty();
}

LoadedChatFormat session_chat_format(const Session& session, const TokenizerFlags& f) {
  std::optional<ChatFamily> family;
  if (!f.chat_family.empty()) family = parse_chat_family(f.chat_family, "--chat-family");
  else if (!session.deployment().tokenizer.chat_family.empty())
    family = parse_chat_family(session.deployment().tokenizer.chat_family, "tokenizer.chat_family");
  const std::string path = f.tokenizer.empty() ? session.deployment().tokenizer.path : f.tokenizer;
  LoadedChatFormat cf = load_chat_format(session.model_dir(), path, family);
  spdlog::info("chat family {} ({}); tokenizer {}: {}", chat_family_name(cf.format.family()), cf.family_reason,
               cf.tokenizer_path, tokenizer_kind_name(cf.format.tokenizer().kind()));
  return cf;
}

}  // namespace glmpipe
