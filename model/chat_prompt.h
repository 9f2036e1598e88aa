// ChatGLM-6B (v1) chat prompt and response post-processing (spec §2.5, HF `chat`/`stream_chat`,
// `process_response`).
//
//   build_chat_prompt({}, "你好")                      == "你好"
//   build_chat_prompt({{"你好", "你好👋！…"}}, "晚上…") == "[Round 0]\n问：你好\n答：你好👋！…\n[Round 1]\n问：晚上…\n答："
//   postprocess_response(tokenizer.decode(generated_ids))  // strip, [[训练时间]], full-width punctuation
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "model/chat/chat_message.h"

namespace glmpipe {

using ChatHistory = std::vector<std::pair<std::string, std::string>>;  // (query, response) per round

// Empty history → the query itself; else "[Round i]\n问：q_i\n答：r_i\n" for every past round, then
// "[Round n]\n问：query\n答：" (full-width colons U+FF1A).
std::string build_chat_prompt(const ChatHistory& history, const std::string& query);

// 1. strip leading/trailing whitespace (Python str.strip() set); 2. "[[训练时间]]" → "2023年";
// 3. for , ! : ; ? in that order: the ASCII mark right after a CJK char (U+4E00–U+9FFF) becomes
// full-width, then the ASCII mark right before a CJK char. Works on UTF-8 code points; invalid
// UTF-8 bytes are passed through unchanged.
std::string postprocess_response(const std::string& response);

// OpenAI-style chat messages: model/chat/chat_message.h (v1 reads role and content only).

struct ChatTurn {
  ChatHistory history;
  std::string query;
};

// Messages → (history, query): an optional single leading system message, then user/assistant
// alternating, ending with a user message (the query). The system content is prepended to the
// first user query, separated by "\n". Throws glmpipe::Error on empty input, unknown roles,
// misplaced system messages, two user or two assistant messages in a row, or a last message that
// is not from the user.
ChatTurn messages_to_turn(const std::vector<ChatMessage>& messages);
// build_chat_prompt(messages_to_turn(messages)).
std::string build_prompt_from_messages(const std::vector<ChatMessage>& messages);

}  // namespace glmpipe
