// Each family's chat prompt (ids, generation prompt included) and reply parsing, exactly as the
// family's official chat builder and process_response (chatglm2-family.md §2). Prompts are built
// at the id level: role tokens are inserted by id and message text is encoded with encode_text(),
// so text a user types (e.g. "<|user|>") never becomes a special token. Used through ChatFormat
// (model/chat/chat_format.h).
//
// Roles: system, user, assistant; ChatGLM3/GLM-4 also observation (OpenAI "tool"/"function").
// An assistant message's tool_calls are replayed the family's way (ChatGLM3: metadata = name,
// content = ```python\ntool_call(k=v, …)\n```; GLM-4: metadata = name, content = the JSON).
#pragma once

#include <nlohmann/json.hpp>

#include <vector>

#include "model/chat/chat_message.h"
#include "model/tokenizer/text_tokenizer.h"

namespace glmpipe {

// ChatGLM2: "[Round i]\n\n问：q\n\n答：r\n\n" per past round (from 1), then "[Round n]\n\n问：q\n\n答：",
// encoded with [gMASK] sop; alternation rules and the system message as v1's messages_to_turn.
std::vector<int> chatglm2_prompt_ids(const Tokenizer& tok, const std::vector<ChatMessage>& messages);
// decode → strip → "[[训练时间]]" → "2023年".
ChatReply chatglm2_parse_reply(const Tokenizer& tok, const std::vector<int>& ids);

// ChatGLM3 build_chat_input: [gMASK] sop, per message <|role|> + sp(metadata + "\n") + sp(content),
// then <|assistant|>. With tools, the system message (the first message when it is one, else
// kChatGLM3ToolSystem) carries them (model/chat/tool_prompt.h).
std::vector<int> chatglm3_prompt_ids(const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                                     const nlohmann::ordered_json& tools);
// process_response: split on <|assistant|>; the last part's first line is its metadata. Empty
// metadata → text (strip, 训练时间 fix); a tool name with tools offered → a call parsed from the
// ```python tool_call(...)``` body; unparsable calls come back as text.
ChatReply chatglm3_parse_reply(const Tokenizer& tok, const std::vector<int>& ids, bool tools_offered);

// glm-4-9b-chat chat_template: [gMASK]<sop>, a <|system|> tools block when tools are given, then
// per message with content <|role|> + text(metadata + "\n" + content), then <|assistant|>.
std::vector<int> glm4_prompt_ids(const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                                 const nlohmann::ordered_json& tools);
// process_response: as ChatGLM3, but a call's body is JSON ({"city": "北京"}).
ChatReply glm4_parse_reply(const Tokenizer& tok, const std::vector<int>& ids, bool tools_offered);

// "tool"/"function" → "observation"; Error naming the message for unknown roles.
std::string normalized_role(const std::string& role, size_t index, bool observation_allowed);

}  // namespace glmpipe
