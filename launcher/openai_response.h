// The response side of the OpenAI-compatible API: a choice's text as tokens arrive (stop strings,
// streaming without leaking a partial stop string), logprobs entries, completion bodies and
// stream chunks for /v1/chat/completions and /v1/completions.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "launcher/openai_request.h"
#include "model/chat/chat_format.h"
#include "model/tokenizer.h"

namespace glmpipe {

// The text of one choice, token by token. Generation ends at the first occurrence of a stop string,
// which is not part of the text; take_stable() never returns a tail that could still turn out to
// be the start of a stop string (it is held back until the next token decides).
class ChoiceText {
 public:
  // `context`: ids decoded before the first generated one but not part of the text (the prompt's
  // tail, so that a first piece "▁that" decodes to " that" as it does inside the whole text).
  ChoiceText(std::shared_ptr<const Tokenizer> tok, std::vector<std::string> stop,
             const std::vector<int64_t>& context = {});
  // Feeds one generated id (not the final eos). Returns true when a stop string completed: the
  // choice is over (finish_reason "stop") and further tokens are ignored.
  bool push(int id);
  // The generation ended (eos, length, stop): the held-back text becomes final.
  void finish();
  // Text not returned before that is safe to show now.
  std::string take_stable();
  const std::string& text() const { return text_; }  // so far, cut before the stop string
  bool stopped() const { return stopped_; }

 private:
  void find_stop(size_t from);
  StreamDecoder decoder_;
  std::vector<std::string> stop_;
  size_t max_stop_ = 0;
  std::string text_;
  size_t taken_ = 0;
  bool stopped_ = false, finished_ = false;
};

// The text of one token for logprobs ("token" and "bytes"): Tokenizer::token_bytes (a piece with
// ▁ as a space, v1's <n>, <|tab|>, <|blank_k|> and byte pieces as what they stand for).
std::string token_text(const Tokenizer& tok, int id);

struct TokenLogprob {
  int64_t id = 0;
  double logprob = 0;
  std::vector<std::pair<int64_t, double>> top;
};

// choices[].logprobs.content[] entries {token, logprob, bytes, top_logprobs[]} (chat).
nlohmann::json chat_logprobs(const Tokenizer& tok, const std::vector<TokenLogprob>& lps);
// choices[].logprobs {tokens, token_logprobs, top_logprobs, text_offset} (completions); `offset0`:
// the text offset of the first token.
nlohmann::json completion_logprobs(const Tokenizer& tok, const std::vector<TokenLogprob>& lps, size_t offset0);

nlohmann::json usage_json(int64_t prompt_tokens, int64_t completion_tokens);

// A finished choice, for non-streamed responses.
struct ChoiceOut {
  int64_t index = 0;
  std::string text;  // chat: post-processed content; completions: echo + raw text
  std::vector<ToolCall> tool_calls;  // chat: the model's calls (content null when text is empty)
  std::string finish_reason;         // "tool_calls" when there are calls
  bool with_logprobs = false;
  nlohmann::json logprobs;  // chat_logprobs / completion_logprobs
};

// A chat choice's reply once generation ended: `ids` the generated ids (stop id excluded), `text`
// the ChoiceText (cut before a stop string when `stopped`). A stop string's cut is text (the
// family's clean-up); otherwise the family's parse_reply, whose tool calls (tools offered) get ids
// "call_<choice id>_<k>" and finish_reason "tool_calls".
ChoiceOut chat_choice(const ChatFormat& chat, int64_t index, const std::vector<int>& ids, const std::string& text,
                      bool stopped, bool tools_offered, const std::string& finish_reason, const std::string& call_id);
// OpenAI message.tool_calls: [{"id", "type": "function", "function": {"name", "arguments"}}] (with
// "index" for stream deltas).
nlohmann::json tool_calls_json(const std::vector<ToolCall>& calls, bool with_index);

nlohmann::json completion_body(Endpoint ep, const std::string& id, const std::string& model,
                               const std::vector<ChoiceOut>& choices, int64_t prompt_tokens, int64_t completion_tokens);

// One stream chunk carrying one choice's delta (chat: {"role"/"content"}; completions: the text).
// `finish_reason` null while streaming; `logprobs` null when not asked. `tool_calls` (chat, an
// array): the delta carries them (tool_calls_json with index) instead of content.
nlohmann::json stream_chunk(Endpoint ep, const std::string& id, const std::string& model, int64_t index,
                            const std::string& text, bool role, const nlohmann::json& logprobs,
                            const nlohmann::json& finish_reason, const nlohmann::json& tool_calls = nullptr);
// The final usage chunk (stream_options.include_usage): empty choices, usage set.
nlohmann::json usage_chunk(Endpoint ep, const std::string& id, const std::string& model, int64_t prompt_tokens,
                           int64_t completion_tokens);

}  // namespace glmpipe
