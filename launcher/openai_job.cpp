#include "launcher/openai_job.h"

#include <algorithm>


namespace glmpipe {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {
// Asks `gone` at most every 200 ms, also while tokens keep coming.
struct GoneCheck {
  const CompletionJob::GoneFn& fn;
  Clock::time_point last = Clock::now();
  bool gone() {
    const auto now = Clock::now();
    if (!fn || now - last < std::chrono::milliseconds(200)) return false;
    last = now;
    return fn();
  }
};
}  // namespace

struct CompletionJob::Choice {
  Choice(int64_t i, const ChatFormat& chat, const SamplingParams& p, const std::vector<int64_t>& context)
      : index(i), text(chat.tokenizer_ptr(), p.stop, context) {}
  int64_t index = 0;
  size_t prompt = 0;  // index into req_.prompts
  std::string request_id;
  std::shared_ptr<RequestRouter::Stream> stream;
  int64_t completion_tokens = 0;
  ChoiceText text;
  std::vector<int> ids;  // generated, the final stop id excluded (parse_reply)
  bool lead_done = false;  // streamed chat: the reply's leading whitespace is behind us
  std::vector<TokenLogprob> logprobs;
  size_t logprobs_sent = 0;
  bool got_event = false;   // the first event arrived (admission decided)
  bool seq_done = false;    // the scheduler ended the sequence
  bool finished = false;    // the choice is over (also when a stop string ended it)
  std::string finish_reason, error;
  bool head_sent = false, final_sent = false;  // streaming
  Clock::time_point start = Clock::now(), last_token;
};

CompletionJob::CompletionJob(ApiRequest req, std::string id, const ChatFormat& chat, Scheduler& sched,
                             RequestRouter& router, ServerMetrics& metrics)
    : req_(std::move(req)), id_(std::move(id)), chat_(chat), sched_(sched), router_(router), metrics_(metrics) {
  for (size_t p = 0; p < req_.prompts.size(); ++p)
    for (int64_t i = 0; i < req_.n; ++i) {
      // Completions continue the prompt's text: decode the first tokens in the prompt's context.
      const auto& ids = req_.prompts[p].ids;
      std::vector<int64_t> context;
      if (req_.endpoint == Endpoint::kCompletions)
        context.assign(ids.end() - std::min<size_t>(ids.size(), 8), ids.end());
      auto c = std::make_unique<Choice>(static_cast<int64_t>(choices_.size()), chat_, req_.params, context);
      c->prompt = p;
      choices_.push_back(std::move(c));
    }
}

CompletionJob::~CompletionJob() { release_all(); }

void CompletionJob::release(Choice& c) {
  if (!c.stream) return;
  if (!c.seq_done && c.stream->seq_id >= 0) sched_.cancel(c.stream->seq_id);
  router_.close(c.request_id);
  c.stream.reset();
}

void CompletionJob::release_all() {
  for (auto& c : choices_) release(*c);
}

bool CompletionJob::start(const SubmitFn& submit, const GoneFn& gone) {
  for (auto& c : choices_) {
    Request r;
    r.id = choices_.size() == 1 ? id_ : id_ + "-" + std::to_string(c->index);
    r.input_ids = req_.prompts[c->prompt].ids;
    r.params = req_.params;
    r.params.seed = req_.params.seed + static_cast<uint64_t>(c->index % req_.n);
    r.stop_ids = req_.stop_ids;
    c->request_id = r.id;
    if (!submit(std::move(r), c->stream)) {
      release_all();
      throw ApiError{503, "the server is shutting down", "", "", "server_error"};
    }
  }
  GoneCheck check{gone};
  for (auto& c : choices_) {
    while (!c->got_event) {
      pump(std::chrono::milliseconds(200));
      if (check.gone()) {
        release_all();
        return false;
      }
    }
    if (c->seq_done && c->finish_reason != "stop" && c->finish_reason != "length" && c->completion_tokens == 0) {
      const ApiError e = failure(*c);
      release_all();
      throw e;
    }
  }
  return true;
}

ApiError CompletionJob::failure(const Choice& c) const {
  if (c.finish_reason == "error" && c.error.find("does not fit") != std::string::npos)
    return ApiError{400, "This model's maximum context length is exceeded: " + c.error,
                    req_.endpoint == Endpoint::kChat ? "messages" : "prompt", "context_length_exceeded"};
  if (c.finish_reason == "cancelled")
    return ApiError{503, "the request was cancelled (server shutting down)", "", "", "server_error"};
  return ApiError{500, "generation failed: " + c.error, "", "", "server_error"};
}

void CompletionJob::on_event(Choice& c, const TokenEvent& ev) {
  c.got_event = true;
  if (ev.token >= 0 && !c.finished) {
    const auto now = Clock::now();
    if (c.completion_tokens == 0)
      metrics_.time_to_first_token.observe(std::chrono::duration<double>(now - c.start).count());
    else
      metrics_.inter_token.observe(std::chrono::duration<double>(now - c.last_token).count());
    c.last_token = now;
    c.completion_tokens += 1;
    metrics_.generated_tokens_total += 1;
    const bool eos = ev.finished && ev.finish_reason == "stop";
    if (!eos) {
      if (ev.has_logprob) c.logprobs.push_back({ev.token, ev.logprob, ev.top_logprobs});
      c.ids.push_back(static_cast<int>(ev.token));
      if (c.text.push(static_cast<int>(ev.token))) {  // a stop string: the choice ends here
        c.finished = true;
        c.finish_reason = "stop";
        c.text.finish();
        release(c);
        return;
      }
    }
  }
  if (ev.finished) {
    c.seq_done = true;
    if (!c.finished) {
      c.finished = true;
      c.finish_reason = ev.finish_reason;
      c.error = ev.error;
      c.text.finish();
    }
  }
}

bool CompletionJob::pump(std::chrono::milliseconds wait) {
  bool any = false;
  for (auto& c : choices_) {  // whatever has arrived
    TokenEvent ev;
    while (c->stream && !c->seq_done && c->stream->next(ev, std::chrono::milliseconds(0))) {
      on_event(*c, ev);
      any = true;
    }
  }
  if (any) return true;
  // Nothing yet: wait on the first open choice (briefly when others may have news sooner).
  if (choices_.size() > 1) wait = std::min(wait, std::chrono::milliseconds(5));
  for (auto& c : choices_) {
    if (!c->stream || c->seq_done) continue;
    TokenEvent ev;
    if (!c->stream->next(ev, wait)) return false;
    on_event(*c, ev);
    return true;
  }
  return false;
}

int64_t CompletionJob::prompt_tokens() const {
  int64_t n = 0;
  for (const auto& p : req_.prompts) n += static_cast<int64_t>(p.ids.size());
  return n;
}

int64_t CompletionJob::completion_tokens() const {
  int64_t n = 0;
  for (const auto& c : choices_) n += c->completion_tokens;
  return n;
}

json CompletionJob::logprobs_json(const Choice& c, size_t from, size_t to) const {
  std::vector<TokenLogprob> part(c.logprobs.begin() + from, c.logprobs.begin() + to);
  if (req_.endpoint == Endpoint::kChat) return chat_logprobs(chat_.tokenizer(), part);
  size_t offset = req_.echo ? req_.prompts[c.prompt].text.size() : 0;
  for (size_t i = 0; i < from; ++i) offset += token_text(chat_.tokenizer(), static_cast<int>(c.logprobs[i].id)).size();
  return completion_logprobs(chat_.tokenizer(), part, offset);
}

ChoiceOut CompletionJob::reply_of(const Choice& c) const {
  return chat_choice(chat_, c.index, c.ids, c.text.text(), c.text.stopped(), req_.tools_offered, c.finish_reason,
                     id_.substr(id_.find('-') + 1) + "_" + std::to_string(c.index));
}

bool CompletionJob::run_to_end(json& body, const GoneFn& gone) {
  GoneCheck check{gone};
  for (auto& c : choices_)
    while (!c->finished) {
      pump(std::chrono::milliseconds(200));
      if (check.gone()) {
        release_all();
        return false;
      }
    }
  release_all();
  std::vector<ChoiceOut> outs;
  for (const auto& c : choices_) {
    if (c->finish_reason != "stop" && c->finish_reason != "length") throw failure(*c);
    ChoiceOut o;
    if (req_.endpoint == Endpoint::kChat) {
      o = reply_of(*c);
    } else {
      o.index = c->index;
      o.finish_reason = c->finish_reason;
      o.text = (req_.echo ? req_.prompts[c->prompt].text : std::string()) + c->text.text();
    }
    o.with_logprobs = req_.params.top_logprobs >= 0;
    if (o.with_logprobs) o.logprobs = logprobs_json(*c, 0, c->logprobs.size());
    outs.push_back(std::move(o));
  }
  body = completion_body(req_.endpoint, id_, req_.model, outs, prompt_tokens(), completion_tokens());
  return true;
}

void CompletionJob::emit(Choice& c, std::vector<json>& out) {
  if (c.final_sent) return;
  const bool chat = req_.endpoint == Endpoint::kChat;
  // With tools offered, a chat reply may turn out to be a call: nothing is shown before it ends.
  const bool hold = chat && req_.tools_offered && !c.finished;
  std::string text;
  if (!c.head_sent && !chat && req_.echo) text = req_.prompts[c.prompt].text;
  json tool_calls = nullptr;
  std::string reason = c.finish_reason;
  if (chat && req_.tools_offered && c.finished) {
    ChoiceOut o = reply_of(c);
    reason = o.finish_reason;
    if (!o.tool_calls.empty()) tool_calls = tool_calls_json(o.tool_calls, true);
    else text = o.text;
  } else if (!hold) {
    text += c.text.take_stable();
    if (chat && chat_.family() != ChatFamily::kChatGLM && !c.lead_done) {
      const size_t b = text.find_first_not_of(" \t\r\n");
      text = b == std::string::npos ? "" : text.substr(b);
      c.lead_done = !text.empty();
    }
  }
  const size_t lp_end = hold ? c.logprobs_sent : c.logprobs.size();
  const bool lps = req_.params.top_logprobs >= 0 && lp_end > c.logprobs_sent;
  // Chat: the first chunk of a choice carries only the role (content ""), as OpenAI's does.
  if (!c.head_sent && chat) out.push_back(stream_chunk(req_.endpoint, id_, req_.model, c.index, "", true, nullptr, nullptr));
  if (!text.empty() || lps || tool_calls.is_array())
    out.push_back(stream_chunk(req_.endpoint, id_, req_.model, c.index, text, false,
                               lps ? logprobs_json(c, c.logprobs_sent, lp_end) : json(nullptr), nullptr, tool_calls));
  c.head_sent = true;
  c.logprobs_sent = lp_end;
  if (c.finished) {
    c.final_sent = true;
    if (reason != "stop" && reason != "length" && reason != "tool_calls") reason = "error";
    out.push_back(stream_chunk(req_.endpoint, id_, req_.model, c.index, "", false, nullptr, reason));
    release(c);
  }
}

void CompletionJob::next_chunks(std::vector<json>& out, bool& done, std::chrono::milliseconds wait) {
  done = false;
  for (auto& c : choices_) emit(*c, out);
  bool all = true;
  for (const auto& c : choices_) all = all && c->final_sent;
  if (all) {
    if (req_.include_usage && !usage_sent_) {
      usage_sent_ = true;
      out.push_back(usage_chunk(req_.endpoint, id_, req_.model, prompt_tokens(), completion_tokens()));
    }
    done = true;
    return;
  }
  if (out.empty() && pump(wait))
    for (auto& c : choices_) emit(*c, out);
}

}  // namespace glmpipe
