// `glmpipe serve --model DIR | --config C.yaml [--host 127.0.0.1] --port P [--served-model-name NAME]...`:
// an OpenAI-compatible
// HTTP server (see launcher/http_server.h). The first stage runs the HTTP threads and the stage
// loop (main thread); the other ranks of a pipeline only run their stage loop.
// SIGTERM/SIGINT: stop accepting, drain in-flight requests for --drain-seconds, cancel the rest,
// shut the pipeline down, exit 0. With several ranks the launching process stays mpirun's parent
// and passes SIGTERM/SIGINT on as SIGUSR1 (mpirun forwards it to every rank; see supervise.h):
// rank 0 stops as above, the other ranks ignore it and end when rank 0 shuts the pipeline down.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <memory>
#include <thread>

#include "common/error.h"
#include "launcher/chat_setup.h"
#include "launcher/cli_util.h"
#include "launcher/command.h"
#include "launcher/http_server.h"
#include "launcher/metrics.h"
#include "launcher/session.h"
#include "stage/request_router.h"

namespace glmpipe {
namespace {

struct ServeOptions {
  SessionOptions session;
  SamplingFlags sampling;
  ServerOptions server;
  TokenizerFlags tokenizer;
  std::vector<std::string> served_names;
};

// Self-pipe: the signal handler only writes one byte; a watcher thread does the work.
int g_signal_pipe[2] = {-1, -1};
extern "C" void on_stop_signal(int sig) {
  const int saved = errno;
  const char c = static_cast<char>(sig);
  if (g_signal_pipe[1] >= 0) (void)!write(g_signal_pipe[1], &c, 1);
  errno = saved;
}

void install_stop_handlers() {
  GLMPIPE_CHECK(pipe(g_signal_pipe) == 0) << "serve: pipe() failed";
  for (int fd : g_signal_pipe) fcntl(fd, F_SETFD, FD_CLOEXEC);
  fcntl(g_signal_pipe[1], F_SETFL, O_NONBLOCK);  // a rank that never reads the pipe must not block in the handler
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) sigaction(sig, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

// Blocks until a byte arrives; returns it (0 = internal wake-up, else the signal number).
int wait_stop() {
  char c = 0;
  while (true) {
    ssize_t n = read(g_signal_pipe[0], &c, 1);
    if (n == 1) return c;
    if (n < 0 && errno == EINTR) continue;
    return 0;
  }
}

std::string basename_of(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const auto slash = dir.rfind('/');
  return slash == std::string::npos ? dir : dir.substr(slash + 1);
}

void run_serve(ServeOptions o) {
  RequestRouter router;
  ServerMetrics metrics;
  // Before loading: a stop signal that arrives while the weights load is kept in the pipe (rank 0
  // reads it once serving; other ranks never read it, so SIGUSR1 from mpirun does not kill them).
  install_stop_handlers();
  o.session.supervise_mpirun = true;
  auto session = Session::create(o.session, router.callback());
  if (!session) return;
  if (!session->ctx().is_first_stage()) {
    session->run();
    return;
  }
  const LoadedChatFormat cf = session_chat_format(*session, o.tokenizer);
  o.server.model_names = o.served_names;
  if (o.server.model_names.empty()) o.server.model_names = {basename_of(session->model_dir())};
  o.server.defaults = o.sampling.over(session->deployment().generation);
  o.server.slots = session->plan().max_batch;
  Scheduler& sched = session->runner().scheduler();
  StageRunner& runner = session->runner();
  const int stage = session->ctx().stage();
  auto snapshot = [&sched, &runner, &metrics, stage] {
    MetricsSnapshot s;
    s.queue_length = sched.queued();
    s.active_sequences = std::max<int64_t>(0, metrics.in_flight.load() - s.queue_length);
    s.stage = stage;
    s.stats = &runner.stats();
    return s;
  };
  ChatServer server(sched, router, metrics, cf.format, session->config(), o.server, snapshot);
  PipelineHealth health;
  health.last_progress = [&runner] { return runner.last_reply(); };
  if (LivenessMonitor* lm = session->liveness())  // "every rank answered": heard within a few heartbeats
    health.silent_ranks = [lm] { return lm->silent_peers(std::max<Duration>(4 * lm->interval(), std::chrono::seconds(2))); };
  server.set_pipeline_health(std::move(health));
  server.start();
  spdlog::info("serving {} on http://{}:{} (POST /v1/chat/completions /v1/completions, GET /v1/models /health "
               "/metrics /openapi.json)",
               o.server.model_names[0], o.server.host, o.server.port);
  std::atomic<bool> stopping{false};
  std::thread watcher([&] {
    const int sig = wait_stop();
    stopping = true;
    if (sig != 0) spdlog::info("signal {}: draining and shutting down", sig);
    server.shutdown();
    sched.request_shutdown();
  });
  auto wake_watcher = [] {
    const char c = 0;
    (void)!write(g_signal_pipe[1], &c, 1);
  };
  try {
    session->run();
  } catch (const std::exception& e) {
    server.abort(std::string("the pipeline failed: ") + e.what());
    wake_watcher();
    watcher.join();
    server.join();
    throw;
  }
  wake_watcher();
  watcher.join();
  server.join();
  spdlog::info("server stopped");
}

CommandRegistrar reg("serve", "OpenAI-compatible HTTP server (chat completions, streaming, /health, /metrics)",
                     [](CLI::App& sub) {
  auto o = std::make_shared<ServeOptions>();
  add_session_options(sub, o->session);
  o->sampling.add_to(sub);
  sub.add_option("--served-model-name", o->served_names,
                 "the name clients give as \"model\" (repeat for aliases; default: the model folder's name)");
  sub.add_option("--host", o->server.host, "address to listen on (default 127.0.0.1)");
  sub.add_option("--port", o->server.port, "TCP port (default 8000)");
  add_tokenizer_flags(sub, o->tokenizer);
  sub.add_option("--health-timeout", o->server.health_timeout_s, "seconds the /health probe may take (default 5)");
  sub.add_option("--drain-seconds", o->server.drain_s, "on SIGTERM, wait this long for in-flight requests (default 3)");
  sub.add_option("--http-threads", o->server.threads,
                 "HTTP worker threads, also the connection cap (default: KV slots + --max-queue + 4, at least 16)")
      ->check(CLI::Range(0, 4096));
  sub.add_option("--max-queue", o->server.max_queue,
                 "completions that may wait for a KV slot; more get 429 + Retry-After (default 16)")
      ->check(CLI::Range(0, 1 << 20));
  sub.add_option("--read-timeout", o->server.read_timeout_s,
                 "seconds a client has to send a whole request, head and body (default 10)")
      ->check(CLI::Range(0.5, 3600.0));
  sub.callback([o] { run_serve(*o); });
});

}  // namespace
}  // namespace glmpipe
