#include "launcher/openai_response.h"

#include <algorithm>
#include <cstdlib>
#include <ctime>

namespace glmpipe {

using json = nlohmann::json;

namespace {
int64_t now_s() { return static_cast<int64_t>(std::time(nullptr)); }

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}
}  // namespace

ChoiceText::ChoiceText(std::shared_ptr<const Tokenizer> tok, std::vector<std::string> stop,
                       const std::vector<int64_t>& context)
    : decoder_(std::move(tok)), stop_(std::move(stop)) {
  for (const auto& s : stop_) max_stop_ = std::max(max_stop_, s.size());
  for (int64_t id : context) (void)decoder_.push(static_cast<int>(id));
}

void ChoiceText::find_stop(size_t from) {
  if (stop_.empty()) return;
  size_t best = std::string::npos;
  for (const auto& s : stop_) best = std::min(best, text_.find(s, from));
  if (best == std::string::npos) return;
  text_.resize(best);
  stopped_ = true;
}

bool ChoiceText::push(int id) {
  if (stopped_ || finished_) return stopped_;
  const size_t before = text_.size();
  text_ += decoder_.push(id);
  // A new occurrence must end in the new text: start max_stop - 1 bytes before it.
  find_stop(before >= max_stop_ ? before - max_stop_ + 1 : 0);
  return stopped_;
}

void ChoiceText::finish() {
  if (finished_) return;
  if (!stopped_) {
    const size_t before = text_.size();
    text_ += decoder_.flush();
    find_stop(before >= max_stop_ ? before - max_stop_ + 1 : 0);
  }
  finished_ = true;
}

std::string ChoiceText::take_stable() {
  size_t end = text_.size();
  if (!finished_ && !stopped_) {
    // Hold back the longest tail that is a proper prefix of a stop string.
    for (size_t len = std::min(max_stop_ - (max_stop_ > 0), text_.size()); len > 0; --len) {
      bool prefix = false;
      for (const auto& s : stop_) prefix = prefix || (s.size() > len && text_.compare(text_.size() - len, len, s, 0, len) == 0);
      if (prefix) {
        end = text_.size() - len;
        break;
      }
    }
  }
  if (end <= taken_) return "";
  std::string out = text_.substr(taken_, end - taken_);
  taken_ = end;
  return out;
}

std::string token_text(const Tokenizer& tok, int id) { return tok.token_bytes(id); }

json chat_logprobs(const Tokenizer& tok, const std::vector<TokenLogprob>& lps) {
  json content = json::array();
  for (const auto& lp : lps) {
    json top = json::array();
    for (const auto& [id, l] : lp.top) {
      const std::string t = token_text(tok, static_cast<int>(id));
      top.push_back({{"token", t}, {"logprob", l}, {"bytes", bytes_of(t)}});
    }
    const std::string t = token_text(tok, static_cast<int>(lp.id));
    content.push_back({{"token", t}, {"logprob", lp.logprob}, {"bytes", bytes_of(t)}, {"top_logprobs", top}});
  }
  return json{{"content", content}, {"refusal", nullptr}};
}

json completion_logprobs(const Tokenizer& tok, const std::vector<TokenLogprob>& lps, size_t offset0) {
  json tokens = json::array(), logprobs = json::array(), tops = json::array(), offsets = json::array();
  size_t off = offset0;
  for (const auto& lp : lps) {
    const std::string t = token_text(tok, static_cast<int>(lp.id));
    tokens.push_back(t);
    logprobs.push_back(lp.logprob);
    json top = json::object();
    for (const auto& [id, l] : lp.top) top[token_text(tok, static_cast<int>(id))] = l;
    tops.push_back(top);
    offsets.push_back(off);
    off += t.size();
  }
  return json{{"tokens", tokens}, {"token_logprobs", logprobs}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return json{{"prompt_tokens", prompt_tokens},
              {"completion_tokens", completion_tokens},
              {"total_tokens", prompt_tokens + completion_tokens}};
}

ChoiceOut chat_choice(const ChatFormat& chat, int64_t index, const std::vector<int>& ids, const std::string& text,
                      bool stopped, bool tools_offered, const std::string& finish_reason, const std::string& call_id) {
  ChoiceOut o;
  o.index = index;
  o.finish_reason = finish_reason;
  if (stopped) {  // a stop string cut the reply: what came before it is text, never a call
    o.text = chat.reply_text(text);
    return o;
  }
  ChatReply r = chat.parse_reply(ids, tools_offered);
  o.text = std::move(r.content);
  o.tool_calls = std::move(r.tool_calls);
  for (size_t k = 0; k < o.tool_calls.size(); ++k)
    if (o.tool_calls[k].id.empty()) o.tool_calls[k].id = "call_" + call_id + "_" + std::to_string(k);
  if (!o.tool_calls.empty() && finish_reason == "stop") o.finish_reason = "tool_calls";
  return o;
}

json tool_calls_json(const std::vector<ToolCall>& calls, bool with_index) {
  json out = json::array();
  for (size_t k = 0; k < calls.size(); ++k) {
    json c = {{"id", calls[k].id}, {"type", "function"},
              {"function", {{"name", calls[k].name}, {"arguments", calls[k].arguments}}}};
    if (with_index) c["index"] = k;
    out.push_back(std::move(c));
  }
  return out;
}

json completion_body(Endpoint ep, const std::string& id, const std::string& model, const std::vector<ChoiceOut>& choices,
                     int64_t prompt_tokens, int64_t completion_tokens) {
  json cs = json::array();
  for (const auto& c : choices) {
    json o = {{"index", c.index}, {"finish_reason", c.finish_reason},
              {"logprobs", c.with_logprobs ? c.logprobs : json(nullptr)}};
    if (ep == Endpoint::kChat && !c.tool_calls.empty())
      o["message"] = {{"role", "assistant"}, {"content", c.text.empty() ? json(nullptr) : json(c.text)},
                      {"tool_calls", tool_calls_json(c.tool_calls, false)}};
    else if (ep == Endpoint::kChat)
      o["message"] = {{"role", "assistant"}, {"content", c.text}};
    else
      o["text"] = c.text;
    cs.push_back(o);
  }
  return json{{"id", id},
              {"object", ep == Endpoint::kChat ? "chat.completion" : "text_completion"},
              {"created", now_s()},
              {"model", model},
              {"choices", cs},
              {"usage", usage_json(prompt_tokens, completion_tokens)}};
}

json stream_chunk(Endpoint ep, const std::string& id, const std::string& model, int64_t index, const std::string& text,
                  bool role, const json& logprobs, const json& finish_reason, const json& tool_calls) {
  json c = {{"index", index}, {"logprobs", logprobs}, {"finish_reason", finish_reason}};
  if (ep == Endpoint::kChat) {
    json delta = json::object();
    if (role) delta["role"] = "assistant";
    if (tool_calls.is_array())
      delta["tool_calls"] = tool_calls;
    else if (role || !text.empty())
      delta["content"] = text;
    c["delta"] = delta;
  } else {
    c["text"] = text;
  }
  return json{{"id", id},
              {"object", ep == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
              {"created", now_s()},
              {"model", model},
              {"choices", json::array({c})}};
}

json usage_chunk(Endpoint ep, const std::string& id, const std::string& model, int64_t prompt_tokens,
                 int64_t completion_tokens) {
  return json{{"id", id},
              {"object", ep == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
              {"created", now_s()},
              {"model", model},
              {"choices", json::array()},
              {"usage", usage_json(prompt_tokens, completion_tokens)}};
}

}  // namespace glmpipe
