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

std::string token_text(const ChatGLMTokenizer& tok, int id) {
  std::string p = tok.id_to_piece(id);
  if (p == "<n>") return "\n";
  if (p == "<|tab|>") return "\t";
  if (p.rfind("<|blank_", 0) == 0 && p.size() > 10) return std::string(std::atoi(p.c_str() + 8), ' ');
  if (p.size() == 6 && p.rfind("<0x", 0) == 0 && p.back() == '>')
    return std::string(1, static_cast<char>(std::strtol(p.substr(3, 2).c_str(), nullptr, 16)));
  if (tok.piece_type(id) == ChatGLMTokenizer::PieceType::kControl) return p;
  std::string out;
  static const std::string kSpace = "\xE2\x96\x81";  // ▁
  for (size_t i = 0; i < p.size();) {
    if (p.compare(i, kSpace.size(), kSpace) == 0) {
      out += ' ';
      i += kSpace.size();
    } else {
      out += p[i++];
    }
  }
  return out;
}

json chat_logprobs(const ChatGLMTokenizer& tok, const std::vector<TokenLogprob>& lps) {
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

json completion_logprobs(const ChatGLMTokenizer& tok, const std::vector<TokenLogprob>& lps, size_t offset0) {
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

json completion_body(Endpoint ep, const std::string& id, const std::string& model, const std::vector<ChoiceOut>& choices,
                     int64_t prompt_tokens, int64_t completion_tokens) {
  json cs = json::array();
  for (const auto& c : choices) {
    json o = {{"index", c.index}, {"finish_reason", c.finish_reason},
              {"logprobs", c.with_logprobs ? c.logprobs : json(nullptr)}};
    if (ep == Endpoint::kChat)
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
                  bool role, const json& logprobs, const json& finish_reason) {
  json c = {{"index", index}, {"logprobs", logprobs}, {"finish_reason", finish_reason}};
  if (ep == Endpoint::kChat) {
    json delta = json::object();
    if (role) delta["role"] = "assistant";
    if (role || !text.empty()) delta["content"] = text;
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
