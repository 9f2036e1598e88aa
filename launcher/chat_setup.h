// The tokenizer and chat family of a session's model, for chat, serve, batch and generate --prompt:
//   --tokenizer FILE      (default: the deployment's tokenizer.path, else MODEL_DIR/tokenizer.model,
//                          else MODEL_DIR/ice_text.model)
//   --chat-family F       (default: the deployment's tokenizer.chat_family, else decided from the
//                          checkpoint's files: model/chat/chat_family.h)
// The choice and its reason are logged once at start-up.
#pragma once

#include <optional>
#include <string>

#include "model/chat/chat_format.h"

namespace CLI {
class App;
}

namespace glmpipe {

class Session;

struct TokenizerFlags {
  std::string tokenizer;
  std::string chat_family;
};

void add_tokenizer_flags(CLI::App& app, TokenizerFlags& f);

// Whether a tokenizer file is named (flag, deployment) or the model directory has one.
bool session_has_tokenizer(const Session& session, const TokenizerFlags& f);

// Error (exit 1) naming the model directory when it has no tokenizer file.
LoadedChatFormat session_chat_format(const Session& session, const TokenizerFlags& f);

}  // namespace glmpipe
