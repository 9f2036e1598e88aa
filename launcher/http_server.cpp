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
#include "launcher/openai_job.h"
#include "launcher/openai_request.h"
#include "launcher/openapi.h"

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

struct ChatServer::Impl {
  Scheduler& sched;
  RequestRouter& router;
  ServerMetrics& metrics;
  ChatFormat chat;
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
  ApiContext api;  // what requests are checked against

  Impl(Scheduler& s, RequestRouter& r, ServerMetrics& m, ChatFormat f, const ModelConfig& c, ServerOptions o,
       std::function<MetricsSnapshot()> snap)
      : sched(s), router(r), metrics(m), chat(std::move(f)), cfg(c), opt(resolve(std::move(o))), snapshot(std::move(snap)),
        guard(ConnectionGuardOptions{std::chrono::milliseconds(static_cast<int64_t>(opt.read_timeout_s * 1000)),
                                     opt.threads, std::chrono::milliseconds(200)}) {
    api.chat = &chat;
    api.model = &cfg;
    api.model_names = opt.model_names;
    api.defaults = opt.defaults;
    api.vocab_size = cfg.vocab_size;
  }

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
  // One completion request's place among the outstanding ones (bounded by completion_limit(); the
  // /health probe takes none: it is bounded by its timeout). Released when the last holder goes.
  struct Place {
    Impl* im;
    ~Place() {
      std::lock_guard<std::mutex> lock(im->submit_mu);
      im->outstanding -= 1;
    }
  };
  Admit reserve(std::shared_ptr<Place>& place) {
    std::lock_guard<std::mutex> lock(submit_mu);
    if (!accepting) return Admit::kClosed;
    if (outstanding >= completion_limit()) return Admit::kFull;
    outstanding += 1;
    place.reset(new Place{this});
    return Admit::kOk;
  }
  // Registers and submits one sequence; false when the server no longer accepts work.
  bool submit(Request r, std::shared_ptr<RequestRouter::Stream>& stream) {
    std::lock_guard<std::mutex> lock(submit_mu);
    if (!accepting) return false;
    stream = router.open(r.id);
    stream->seq_id = sched.submit(std::move(r));
    return true;
  }
  // Every slot taken (a probe would only wait in the queue).
  bool all_slots_busy() {
    std::lock_guard<std::mutex> lock(submit_mu);
    return outstanding >= opt.slots || sched.queued() > 0;
  }

  void send_error(httplib::Response& res, const ApiError& e) {
    metrics.request_errors_total += 1;
    res.status = e.status;
    res.set_content(dump_json(error_body(e)), "application/json");
  }

  // POST /v1/chat/completions and /v1/completions: parse, submit every choice's sequence (the first
  // events decide the status), then one body or a server-sent-event stream ending in [DONE]. A
  // client that hangs up before the answer is complete has its sequences cancelled.
  void handle_completion(const httplib::Request& req, httplib::Response& res, Endpoint ep) {
    metrics.requests_total += 1;
    std::shared_ptr<CompletionJob> job;
    try {
      ApiRequest ar = ep == Endpoint::kChat ? parse_chat_request(req.body, api) : parse_completion_request(req.body, api);
      job = std::make_shared<CompletionJob>(std::move(ar), router.new_request_id(ep == Endpoint::kChat ? "chatcmpl-" : "cmpl-"),
                                            chat, sched, router, metrics);
    } catch (const ApiError& e) {
      return send_error(res, e);
    }
    std::shared_ptr<Place> place;
    switch (reserve(place)) {
      case Admit::kOk: break;
      case Admit::kClosed: return send_error(res, ApiError{503, "the server is shutting down", "", "", "server_error"});
      case Admit::kFull:
        res.set_header("Retry-After", "1");
        return send_error(res, ApiError{429,
                                        "too many requests: " + std::to_string(completion_limit()) +
                                            " are in flight or queued; retry later",
                                        "", "rate_limit_exceeded", "requests"});
    }
    guard.request_started(req.remote_addr, req.remote_port);
    auto gone = [this, addr = req.remote_addr, port = req.remote_port] { return guard.peer_closed(addr, port); };
    auto abandon = [&](const char* when) { spdlog::info("{}: client went away {}; cancelling", job->id(), when); };
    try {
      if (!job->start([this](Request r, std::shared_ptr<RequestRouter::Stream>& s) { return submit(std::move(r), s); },
                      gone))
        return abandon("before the first token");
    } catch (const ApiError& e) {
      return send_error(res, e);
    }
    metrics.in_flight += 1;
    if (!job->stream()) {
      json out;
      bool complete = false;
      try {
        complete = job->run_to_end(out, gone);
      } catch (const ApiError& e) {
        metrics.in_flight -= 1;
        return send_error(res, e);
      }
      metrics.in_flight -= 1;
      if (!complete) return abandon("before the (non-streamed) answer");
      res.set_content(dump_json(out), "application/json");
      return;
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    auto ended = std::make_shared<bool>(false);
    res.set_chunked_content_provider(
        "text/event-stream",
        [job, ended, gone](size_t, httplib::DataSink& sink) {
          std::vector<json> chunks;
          bool done = false;
          job->next_chunks(chunks, done, std::chrono::milliseconds(200));
          // A client that left while no token came (queued, or a long prefill) is noticed here.
          if (chunks.empty() && !done && gone()) return false;
          for (const auto& c : chunks) {
            const std::string line = "data: " + dump_json(c) + "\n\n";
            if (!sink.write(line.data(), line.size())) return false;
          }
          if (done) {
            static const std::string kDone = "data: [DONE]\n\n";
            *ended = true;
            sink.write(kDone.data(), kDone.size());
            sink.done();
          }
          return true;
        },
        [this, job, ended, place](bool success) {
          if (!*ended) spdlog::info("{}: client went away mid-stream (success={}); cancelling", job->id(), success);
          job->release_all();
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
    for (int id : chat.text_ids("")) r.input_ids.push_back(id);  // the family's prefix: [gMASK] sop (v1: suffix)
    r.params.greedy = true;
    r.params.max_new_tokens = 1;
    const std::string id = r.id;
    const auto start = Clock::now();
    std::shared_ptr<RequestRouter::Stream> stream;
    if (!submit(std::move(r), stream)) {
      res.status = 503;
      res.set_content(dump_json(json{{"status", "shutting down"}}), "application/json");
      return;
    }
    const auto deadline = start + std::chrono::duration<double>(opt.health_timeout_s);
    TokenEvent ev;
    bool finished = false;
    std::string reason, error;
    while (!finished && Clock::now() < deadline) {
      if (!stream->next(ev, std::chrono::milliseconds(50))) continue;
      if (ev.finished) {
        finished = true;
        reason = ev.finish_reason;
        error = ev.error;
      }
    }
    const double took = since(start);
    const bool ok = finished && (reason == "stop" || reason == "length");
    json body = ok ? json{{"status", "ok"}, {"probe_seconds", took}}
                   : json{{"status", "unavailable"},
                          {"error", finished ? "probe ended with " + reason + ": " + error
                                             : "no token within " + std::to_string(opt.health_timeout_s) + " s"}};
    if (!finished && stream->seq_id >= 0) sched.cancel(stream->seq_id);
    router.close(id);
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
    svr.Post("/v1/chat/completions",
             [this](const httplib::Request& q, httplib::Response& s) { handle_completion(q, s, Endpoint::kChat); });
    svr.Post("/v1/completions",
             [this](const httplib::Request& q, httplib::Response& s) { handle_completion(q, s, Endpoint::kCompletions); });
    svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& s) {
      json data = json::array();
      for (const auto& name : api.model_names)
        data.push_back({{"id", name}, {"object", "model"}, {"created", created}, {"owned_by", "glmpipe"}});
      s.set_content(dump_json(json{{"object", "list"}, {"data", data}}), "application/json");
    });
    svr.Get("/openapi.json", [](const httplib::Request&, httplib::Response& s) {
      s.set_content(openapi_json(), "application/json");
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

ChatServer::ChatServer(Scheduler& scheduler, RequestRouter& router, ServerMetrics& metrics, ChatFormat chat,
                       const ModelConfig& config, ServerOptions options, std::function<MetricsSnapshot()> snapshot)
    : impl_(std::make_unique<Impl>(scheduler, router, metrics, std::move(chat), config, std::move(options),
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
