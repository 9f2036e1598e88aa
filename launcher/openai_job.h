// CompletionJob: one OpenAI request in flight — its sequences (one per prompt × choice, each its
// own scheduler Request with seed + choice index), their events turned into choice text (stop
// strings, logprobs), and the answer: one body, or stream chunks. HTTP-free: the server hands it
// a submit function and writes what it returns.
// Chat replies are read the family's way (ChatFormat::parse_reply): with tools offered, a reply
// that is a tool call becomes `tool_calls` (finish_reason "tool_calls"); a streamed choice then
// holds its text back until it ends (a call is only known once its body is complete). ChatGLM2+
// replies start with "\n": streamed chat text drops leading whitespace, as the parse's strip does.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "launcher/metrics.h"
#include "launcher/openai_request.h"
#include "launcher/openai_response.h"
#include "stage/request_router.h"
#include "stage/scheduler.h"

namespace glmpipe {

class CompletionJob {
 public:
  // Registers a Request under r.id, submits it, sets the stream; false when the server no longer
  // accepts work.
  using SubmitFn = std::function<bool(Request r, std::shared_ptr<RequestRouter::Stream>& stream)>;

  // `chat`: the model's tokenizer and chat family (choice text, reply parsing); outlives the job.
  CompletionJob(ApiRequest req, std::string id, const ChatFormat& chat, Scheduler& sched, RequestRouter& router,
                ServerMetrics& metrics);
  ~CompletionJob();  // releases whatever is still open (cancels unfinished sequences)

  // Tells whether the client has gone away (checked while waiting).
  using GoneFn = std::function<bool()>;

  // Submits every sequence and waits for each one's first event; false (all released) when the
  // client left meanwhile. Throws ApiError when the server refuses (503) or the scheduler rejected
  // the prompt (e.g. 400 context_length_exceeded).
  bool start(const SubmitFn& submit, const GoneFn& gone);
  // Non-streamed: waits for every choice and sets `body` (chat.completion / text_completion);
  // false when the client left. Throws ApiError when a sequence failed.
  bool run_to_end(nlohmann::json& body, const GoneFn& gone);
  // Streamed: appends the SSE payloads (JSON objects) that are ready to `out`, waiting up to
  // `wait` for news when nothing is; after the last choice ends (and the usage chunk when asked)
  // sets `done`.
  void next_chunks(std::vector<nlohmann::json>& out, bool& done, std::chrono::milliseconds wait);
  void release_all();
  const std::string& id() const { return id_; }
  bool stream() const { return req_.stream; }

 private:
  struct Choice;
  bool pump(std::chrono::milliseconds wait);  // processes available events; true if any came
  void on_event(Choice& c, const TokenEvent& ev);
  void release(Choice& c);
  ApiError failure(const Choice& c) const;
  nlohmann::json logprobs_json(const Choice& c, size_t from, size_t to) const;
  ChoiceOut reply_of(const Choice& c) const;  // chat: content or tool calls, once finished
  void emit(Choice& c, std::vector<nlohmann::json>& out);  // stream chunks of one choice
  int64_t prompt_tokens() const;
  int64_t completion_tokens() const;

  ApiRequest req_;
  std::string id_;
  const ChatFormat& chat_;
  Scheduler& sched_;
  RequestRouter& router_;
  ServerMetrics& metrics_;
  std::vector<std::unique_ptr<Choice>> choices_;
  bool usage_sent_ = false;
};

}  // namespace glmpipe
