#include "launcher/http_server.h"

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>
#include <thread>

#include "common/error.h"
#include "launcher/connection_guard.h"
#include "launcher/openai_request.h"
#include "launcher/openai_response.h"
#include "model/chat_prompt.h"

namespace glmpipe {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kMaxBodyBytes = size_t{8} << 20;  // larger request bodies get 413

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The message of an error response httplib produced before (or instead of) a handler.
std::string status_text(int status, const httplib::Request& q) {
  switch (status) {
    case 400: return "malformed HTTP request";
    case 404: return "no route for " + q.method + " " + q.path;
    case 405: return "method " + q.method + " is not allowed for " + q.path;
    case 408: return "the request was not received in time";
    case 413: return "request body too large (the limit is " + std::to_string(kMaxBodyBytes >> 20) + " MiB)";
    case 414: return "request URI too long";
    case 416: return "range not satisfiable";
    case 431: return "request header fields too large";
    default: return "HTTP error " + std::to_string(status);
  }
}

const char* status_code_name(int status) {
  switch (status) {
    case 404: return "not_found";
    case 413: return "request_too_large";
    default: return "";
  }
}

}  // namespace

// One completion in flight: its router stream and token accounting.
struct Completion {
  std::string id;
  std::shared_ptr<RequestRouter::Stream> stream;
  Clock::time_point start = Clock::now(), last_token;
  Clock::time_point gone_checked = Clock::now();  // when the client was last checked for a hang-up
  int64_t prompt_tokens = 0, completion_tokens = 0;
  std::vector<int> text_ids;  // generated ids that are text (not the final eos)
  bool counted = false;       // holds one of the outstanding-completion places
  bool finished = false;
  std::string finish_reason, error;
};

struct ChatServer::Impl {
  Scheduler& sched;
  RequestRouter& router;
  ServerMetrics& metrics;
  ChatGLMTokenizer tok;
  ModelConfig cfg;
  ServerOptions opt;
  std::function<MetricsSnapshot()> snapshot;
  httplib::Server svr;
  std::thread listener;
  ConnectionGuard guard;
  PipelineHealth health;
  std::mutex submit_mu;
  bool accepting = true;    // guarded by submit_mu
  int64_t outstanding = 0;  // counted completions submitted and not released (guarded by submit_mu)
  std::atomic<bool> stopped{false};
  int64_t created = static_cast<int64_t>(std::time(nullptr));

  Impl(Scheduler& s, RequestRouter& r, ServerMetrics& m, ChatGLMTokenizer t, const ModelConfig& c, ServerOptions o,
       std::function<MetricsSnapshot()> snap)
      : sched(s), router(r), metrics(m), tok(std::move(t)), cfg(c), opt(resolve(std::move(o))), snapshot(std::move(snap)),
        guard(ConnectionGuardOptions{std::chrono::milliseconds(static_cast<int64_t>(opt.read_timeout_s * 1000)),
                                     opt.threads, std::chrono::milliseconds(200)}) {}

  // threads 0 → enough for every slot and queue place plus /health and /metrics.
  static ServerOptions resolve(ServerOptions o) {
    if (o.threads <= 0) o.threads = static_cast<int>(std::clamp<int64_t>(o.slots + o.max_queue + 4, 16, 4096));
    return o;
  }

  // Completions that may be outstanding at once: the slots plus the queue, and never every HTTP
  // thread (a waiting completion holds one; /health and /metrics need one too).
  int64_t completion_limit() const {
    return std::max<int64_t>(1, std::min<int64_t>(opt.slots + opt.max_queue, opt.threads - 2));
  }

  enum class Admit { kOk, kClosed, kFull };
  // Registers and submits. `counted` completions are bounded by completion_limit() (the /health
  // probe is not: it is bounded by its timeout).
  Admit submit(Request r, Completion& c, bool counted = true) {
    std::lock_guard<std::mutex> lock(submit_mu);
    if (!accepting) return Admit::kClosed;
    if (counted && outstanding >= completion_limit()) return Admit::kFull;
    c.id = r.id;
    c.prompt_tokens = static_cast<int64_t>(r.input_ids.size());
    c.stream = router.open(r.id);
    c.stream->seq_id = sched.submit(std::move(r));
    if (counted) outstanding += 1, c.counted = true;
    return Admit::kOk;
  }
  void release(Completion& c) {
    if (!c.stream) return;
    if (!c.finished && c.stream->seq_id >= 0) sched.cancel(c.stream->seq_id);
    router.close(c.id);
    c.stream.reset();
    if (c.counted) {
      std::lock_guard<std::mutex> lock(submit_mu);
      outstanding -= 1;
      c.counted = false;
    }
  }
  // Every slot taken (a probe would only wait in the queue).
  bool all_slots_busy() {
    std::lock_guard<std::mutex> lock(submit_mu);
    return outstanding >= opt.slots || sched.queued() > 0;
  }

  // Waits for the next event of `c` and accounts for it; false (no event) as soon as `gone()` says
  // the client left. Otherwise no deadline: every submitted sequence ends with a finished event,
  // also on cancel, shutdown and abort, and a stalled pipeline ends the job (comm/liveness.h).
  // `gone()` is asked every 200 ms, also while tokens keep coming.
  bool next_event_or_gone(Completion& c, const std::function<bool()>& gone) {
    constexpr auto kPoll = std::chrono::milliseconds(200);
    TokenEvent ev;
    while (true) {
      const bool got = c.stream->next(ev, kPoll);
      const auto now = Clock::now();
      if (now - c.gone_checked >= kPoll) {
        c.gone_checked = now;
        if (gone()) return false;  // release() cancels the sequence (a finished one is ignored)
      }
      if (got) break;
    }
    account(c, ev);
    return true;
  }
  void account(Completion& c, const TokenEvent& ev) {
    if (ev.token >= 0) {
      const auto now = Clock::now();
      if (c.completion_tokens == 0)
        metrics.time_to_first_token.observe(std::chrono::duration<double>(now - c.start).count());
      else
        metrics.inter_token.observe(std::chrono::duration<double>(now - c.last_token).count());
      c.last_token = now;
      c.completion_tokens += 1;
      metrics.generated_tokens_total += 1;
      if (!(ev.finished && ev.finish_reason == "stop")) c.text_ids.push_back(static_cast<int>(ev.token));
    }
    if (ev.finished) {
      c.finished = true;
      c.finish_reason = ev.finish_reason;
      c.error = ev.error;
    }
  }

  // A failure reported by the scheduler as the first event → the API error to answer with.
  ApiError finish_error(const Completion& c) {
    if (c.finish_reason == "error" && c.error.find("does not fit") != std::string::npos)
      return ApiError{400, "This model's maximum context length is exceeded: " + c.error, "messages",
                      "context_length_exceeded"};
    if (c.finish_reason == "cancelled")
      return ApiError{503, "the request was cancelled (server shutting down)", "", "", "server_error"};
    return ApiError{500, "generation failed: " + c.error, "", "", "server_error"};
  }

  void send_error(httplib::Response& res, const ApiError& e) {
    metrics.request_errors_total += 1;
    res.status = e.status;
    res.set_content(dump_json(error_body(e)), "application/json");
  }

  void handle_completion(const httplib::Request& req, httplib::Response& res) {
    metrics.requests_total += 1;
    bool stream = false;
    Request r;
    try {
      ChatRequest cr = parse_chat_request(req.body, ApiContext{&tok, opt.model_id, opt.defaults});
      r = std::move(cr.request);
      stream = cr.stream;
    } catch (const ApiError& e) {
      return send_error(res, e);
    }
    r.id = router.new_request_id("chatcmpl-");
    auto c = std::make_shared<Completion>();
    switch (submit(std::move(r), *c)) {
      case Admit::kOk: break;
      case Admit::kClosed: return send_error(res, ApiError{503, "the server is shutting down", "", "", "server_error"});
      case Admit::kFull:
        res.set_header("Retry-After", "1");
        return send_error(res, ApiError{429,
                                        "too many requests: " + std::to_string(completion_limit()) +
                                            " are in flight or queued; retry later",
                                        "", "rate_limit_exceeded", "requests"});
    }
    metrics.in_flight += 1;
    guard.request_started(req.remote_addr, req.remote_port);
    // A client that hangs up before the answer is complete has its sequence cancelled.
    auto gone = [this, addr = req.remote_addr, port = req.remote_port] { return guard.peer_closed(addr, port); };
    auto abandon = [&](const char* when) {
      spdlog::info("{}: client went away {}; cancelling", c->id, when);
      release(*c);
      metrics.in_flight -= 1;
    };
    // The first event decides the status: an admission error is an ordinary 4xx/5xx response.
    if (!next_event_or_gone(*c, gone)) return abandon("before the first token");
    if (c->finished && c->completion_tokens == 0) {
      const ApiError e = finish_error(*c);
      release(*c);
      metrics.in_flight -= 1;
      return send_error(res, e);
    }
    if (!stream) {
      while (!c->finished)
        if (!next_event_or_gone(*c, gone)) return abandon("before the (non-streamed) answer");
      release(*c);
      metrics.in_flight -= 1;
      if (c->finish_reason != "stop" && c->finish_reason != "length") return send_error(res, finish_error(*c));
      json out = chat_completion(c->id, opt.model_id, postprocess_response(tok.decode(c->text_ids)), c->finish_reason,
                                 c->prompt_tokens, c->completion_tokens);
      res.set_content(dump_json(out), "application/json");
      return;
    }
    // Streaming: role chunk, content chunks as text becomes stable, final chunk, [DONE].
    struct StreamState {
      std::shared_ptr<Completion> c;
      StreamDecoder decoder;
      size_t fed = 0;  // text ids already pushed to the decoder
      int phase = 0;   // 0: role, 1: content, 2: done
    };
    auto st = std::make_shared<StreamState>(StreamState{c, StreamDecoder(tok)});
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, st, gone](size_t, httplib::DataSink& sink) {
          auto send = [&](const json& j) {
            const std::string line = "data: " + dump_json(j) + "\n\n";
            return sink.write(line.data(), line.size());
          };
          Completion& c = *st->c;
          if (st->phase == 0) {
            st->phase = 1;
            return send(chat_chunk(c.id, opt.model_id, json{{"role", "assistant"}, {"content", ""}}, nullptr));
          }
          if (st->phase == 2) {
            static const std::string done = "data: [DONE]\n\n";
            sink.write(done.data(), done.size());
            sink.done();
            return true;
          }
          // A client that left while no token came (queued, or a long prefill) is noticed here.
          if (st->fed == c.text_ids.size() && !c.finished && !next_event_or_gone(c, gone)) return false;
          std::string text;
          for (; st->fed < c.text_ids.size(); ++st->fed) text += st->decoder.push(c.text_ids[st->fed]);
          if (c.finished) text += st->decoder.flush();
          if (!text.empty() && !send(chat_chunk(c.id, opt.model_id, json{{"content", text}}, nullptr))) return false;
          if (c.finished) {
            st->phase = 2;
            const std::string reason = c.finish_reason == "error" ? "error" : c.finish_reason;
            return send(chat_chunk(c.id, opt.model_id, json::object(), reason));
          }
          return true;
        },
        [this, st](bool success) {
          if (!st->c->finished)
            spdlog::info("{}: client went away mid-stream (success={}); cancelling", st->c->id, success);
          release(*st->c);
          metrics.in_flight -= 1;
        });
  }

  void health_reply(httplib::Response& res, bool ok, const json& body) {
    res.status = ok ? 200 : 503;
    res.set_content(dump_json(body), "application/json");
  }

  // Liveness, not queue position: 503 when a rank is silent or the pipeline makes no progress.
  void handle_health(httplib::Response& res) {
    const std::string silent = health.silent_ranks ? health.silent_ranks() : "";
    if (!silent.empty()) return health_reply(res, false, json{{"status", "unavailable"}, {"error", silent}});
    if (health.last_progress && all_slots_busy()) {
      // Every slot is generating: a probe would wait in the queue. Healthy while tokens flow.
      const double age = since(health.last_progress());
      if (age <= opt.health_timeout_s)
        return health_reply(res, true, json{{"status", "ok"}, {"busy", true}, {"last_token_seconds_ago", age}});
      return health_reply(res, false, json{{"status", "unavailable"},
                                           {"error", "every slot is busy and no token came for " + std::to_string(age) + " s"}});
    }
    probe_health(res);
  }

  // A one-token greedy request through the whole pipeline.
  void probe_health(httplib::Response& res) {
    Request r;
    r.id = router.new_request_id("health-");
    r.input_ids = {cfg.gmask_token_id, cfg.bos_token_id};
    r.params.greedy = true;
    r.params.max_new_tokens = 1;
    Completion c;
    if (submit(std::move(r), c, /*counted=*/false) != Admit::kOk) {
      res.status = 503;
      res.set_content(dump_json(json{{"status", "shutting down"}}), "application/json");
      return;
    }
    const auto deadline = Clock::now() + std::chrono::duration<double>(opt.health_timeout_s);
    TokenEvent ev;
    while (!c.finished && Clock::now() < deadline) {
      if (!c.stream->next(ev, std::chrono::milliseconds(50))) continue;
      if (ev.finished) {
        c.finished = true;
        c.finish_reason = ev.finish_reason;
        c.error = ev.error;
      }
    }
    const double took = since(c.start);
    const bool ok = c.finished && (c.finish_reason == "stop" || c.finish_reason == "length");
    json body = ok ? json{{"status", "ok"}, {"probe_seconds", took}}
                   : json{{"status", "unavailable"},
                          {"error", c.finished ? "probe ended with " + c.finish_reason + ": " + c.error
                                               : "no token within " + std::to_string(opt.health_timeout_s) + " s"}};
    release(c);
    res.status = ok ? 200 : 503;
    res.set_content(dump_json(body), "application/json");
  }

  void routes() {
    svr.new_task_queue = [n = opt.threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
    svr.set_payload_max_length(kMaxBodyBytes);
    svr.set_socket_options([](socket_t sock) {  // no SO_REUSEPORT: a port in use must fail to bind
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    svr.Post("/v1/chat/completions", [this](const httplib::Request& q, httplib::Response& s) { handle_completion(q, s); });
    svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& s) {
      json m = {{"id", opt.model_id}, {"object", "model"}, {"created", created}, {"owned_by", "glmpipe"}};
      s.set_content(dump_json(json{{"object", "list"}, {"data", json::array({m})}}), "application/json");
    });
    svr.Get("/health", [this](const httplib::Request& q, httplib::Response& s) {
      guard.request_started(q.remote_addr, q.remote_port);
      handle_health(s);
    });
    svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& s) {
      s.set_content(render_metrics(metrics, snapshot()), "text/plain; version=0.0.4");
    });
    svr.set_exception_handler([this](const httplib::Request&, httplib::Response& s, std::exception_ptr ep) {
      std::string what = "internal error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      send_error(s, ApiError{500, what, "", "", "server_error"});
    });
    svr.set_error_handler([](const httplib::Request& q, httplib::Response& s) {
      if (!s.body.empty()) return;
      ApiError e{s.status, status_text(s.status, q), "", status_code_name(s.status)};
      s.set_content(dump_json(error_body(e)), "application/json");
    });
    // The response is written: the connection's read deadline restarts (keep-alive).
    svr.set_logger([this](const httplib::Request& q, const httplib::Response&) { guard.request_done(q.remote_addr, q.remote_port); });
  }
};

ChatServer::ChatServer(Scheduler& scheduler, RequestRouter& router, ServerMetrics& metrics, ChatGLMTokenizer tokenizer,
                       const ModelConfig& config, ServerOptions options, std::function<MetricsSnapshot()> snapshot)
    : impl_(std::make_unique<Impl>(scheduler, router, metrics, std::move(tokenizer), config, std::move(options),
                                   std::move(snapshot))) {
  impl_->routes();
}

ChatServer::~ChatServer() {
  if (impl_->listener.joinable()) {
    impl_->svr.stop();
    impl_->listener.join();
  }
}

void ChatServer::start() {
  auto& im = *impl_;
  GLMPIPE_CHECK(im.svr.bind_to_port(im.opt.host, im.opt.port))
      << "serve: cannot listen on " << im.opt.host << ":" << im.opt.port << " (in use, or a bad --host)";
  im.guard.start(im.opt.port);
  im.listener = std::thread([&im] { im.svr.listen_after_bind(); });
}

void ChatServer::set_pipeline_health(PipelineHealth health) { impl_->health = std::move(health); }

void ChatServer::shutdown() {
  auto& im = *impl_;
  {
    std::lock_guard<std::mutex> lock(im.submit_mu);
    if (!im.accepting) return;
    im.accepting = false;
  }
  const auto drain_until = Clock::now() + std::chrono::duration<double>(im.opt.drain_s);
  while (im.router.open_count() > 0 && Clock::now() < drain_until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto left = im.router.open_seq_ids();
  if (!left.empty()) spdlog::info("shutdown: cancelling {} request(s) still in flight", left.size());
  for (int64_t id : left) im.sched.cancel(id);
  // Let cancelled streams write their final chunk before the socket goes (httplib stops streaming
  // responses as soon as the server socket is closed).
  const auto until = Clock::now() + std::chrono::seconds(3);
  while (im.router.open_count() > 0 && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  im.svr.stop();
  im.guard.stop();
  im.stopped = true;
}

void ChatServer::abort(const std::string& why) {
  auto& im = *impl_;
  {
    std::lock_guard<std::mutex> lock(im.submit_mu);
    im.accepting = false;
  }
  im.router.fail_all(why);
  im.svr.stop();
  im.guard.stop();
  im.stopped = true;
}

void ChatServer::join() {
  if (impl_->listener.joinable()) impl_->listener.join();
}

int ChatServer::port() const { return impl_->opt.port; }

}  // namespace glmpipe
