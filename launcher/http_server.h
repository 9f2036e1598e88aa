// ChatServer: the OpenAI-compatible HTTP front end of `glmpipe serve`, running on cpp-httplib
// worker threads of the first stage while the stage loop runs on the main thread.
//
//   POST /v1/chat/completions   OpenAI chat completions (stream=true: server-sent events)
//   POST /v1/completions        OpenAI (legacy) text completions
//   GET  /v1/models             the served names (--served-model-name; default the model folder's name)
//   GET  /openapi.json          the OpenAPI description (launcher/openapi.json)
//   GET  /health                liveness: every rank answers heartbeats and the pipeline makes
//                               progress (a one-token probe when a slot is free; while every slot is
//                               busy, a token within health_timeout_s); 200 or 503
//   GET  /metrics               Prometheus text (see launcher/metrics.h)
//
// Request/response shapes: launcher/openai_request.h, openai_response.h; a request in flight
// (one scheduler Request per choice, continuous batching) is a CompletionJob (openai_job.h),
// whose TokenEvents arrive through RequestRouter streams. A client that disconnects has its
// sequences cancelled (streamed: at the next write; non-streamed: ConnectionGuard notices the
// closed socket).
//
// Self-defence (launcher/connection_guard.h): a read deadline for each request's head and body, a
// connection cap (the oldest idle or slow connections are closed first), and a bound on the
// completions outstanding (slots + max_queue, and never all HTTP threads): one more gets 429 with
// Retry-After.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/model_config.h"
#include "launcher/metrics.h"
#include "model/chat/chat_format.h"
#include "stage/request_router.h"
#include "stage/sampler.h"
#include "stage/scheduler.h"

namespace glmpipe {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::vector<std::string> model_names;  // "model" names accepted; [0] is reported by default
  SamplingParams defaults;   // used for fields a request leaves out (max_tokens → max_new_tokens)
  double health_timeout_s = 5;
  double drain_s = 3;        // on shutdown: wait this long for in-flight requests, then cancel
  int threads = 0;           // HTTP worker threads = the connection cap; 0: slots + max_queue + 4, at least 16
  int64_t slots = 1;         // KV-cache slots of the pipeline (sequences generated at once)
  int64_t max_queue = 16;    // completions waiting for a slot beyond `slots`; more get 429
  double read_timeout_s = 10;  // a request's head and body must arrive within this
};

// What /health asks the pipeline besides the probe (both optional).
struct PipelineHealth {
  std::function<std::string()> silent_ranks;  // "" when every rank answers heartbeats
  std::function<std::chrono::steady_clock::time_point()> last_progress;  // last token of the pipeline
};

class ChatServer {
 public:
  // `chat`: the model's tokenizer and chat family (launcher/chat_setup.h session_chat_format).
  ChatServer(Scheduler& scheduler, RequestRouter& router, ServerMetrics& metrics, ChatFormat chat,
             const ModelConfig& config, ServerOptions options, std::function<MetricsSnapshot()> snapshot);
  ~ChatServer();

  // Binds host:port (Error when it cannot) and serves on a background thread.
  void start();
  // Stops accepting completions (503), waits up to drain_s for in-flight ones, cancels the rest,
  // then closes the listening socket. Does not shut the scheduler down. Idempotent.
  void shutdown();
  // Ends every open request with an error (the stage loop failed) and closes the socket.
  void abort(const std::string& why);
  // Waits for the listening thread to end (after shutdown/abort).
  void join();
  void set_pipeline_health(PipelineHealth health);
  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace glmpipe
