#include "common/error.h"
#include "model/chat/family_chats.h"
#include "model/chat/text_util.h"
#include "model/chat_prompt.h"

namespace glmpipe {

std::string normalized_role(const std::string& role, size_t index, bool observation_allowed) {
  if (role == "system" || role == "user" || role == "assistant") return role;
  if (observation_allowed && (role == "observation" || role == "tool" || role == "function")) return "observation";
  GLMPIPE_FAIL() << "chat messages: message " << index << " has unknown role '" << role << "' (expected system, user, assistant"
                 << (observation_allowed ? ", observation or tool)" : ")");
  return "";  // not reached
}

std::vector<int> chatglm2_prompt_ids(const Tokenizer& tok, const std::vector<ChatMessage>& messages) {
  const ChatTurn turn = messages_to_turn(messages);
  std::string prompt;
  for (size_t i = 0; i < turn.history.size(); ++i)
    prompt += "[Round " + std::to_string(i + 1) + "]\n\n问：" + turn.history[i].first + "\n\n答：" +
              turn.history[i].second + "\n\n";
  prompt += "[Round " + std::to_string(turn.history.size() + 1) + "]\n\n问：" + turn.query + "\n\n答：";
  return tok.encode(prompt, /*add_special=*/true);  // sentencepiece: specials never parsed from text
}

ChatReply chatglm2_parse_reply(const Tokenizer& tok, const std::vector<int>& ids) {
  std::string text = py_strip(tok.decode(ids));
  replace_all_in(text, "[[训练时间]]", "2023年");
  return {text, {}};
}

}  // namespace glmpipe
