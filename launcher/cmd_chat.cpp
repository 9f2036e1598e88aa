// `glmpipe chat --model DIR | --config C.yaml`: an interactive chat on the first stage. Each line
// read from stdin is a user turn (with the history, as ChatGLM's chat()); the answer streams to
// stdout as tokens arrive. Commands: /reset (clear history), /history (print it), /exit (or EOF).
// Ctrl-C (SIGINT) while an answer streams cancels that answer and keeps the session; at the
// prompt it exits. The stage loop runs on the main thread, the REPL on its own.
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <iostream>
#include <memory>
#include <thread>

#include "common/error.h"
#include "launcher/cli_util.h"
#include "launcher/command.h"
#include "launcher/openai_response.h"
#include "launcher/session.h"
#include "model/chat_prompt.h"
#include "model/tokenizer.h"
#include "stage/request_router.h"

namespace glmpipe {
namespace {

struct ChatOptions {
  SessionOptions session;
  SamplingFlags sampling;
  std::string tokenizer;
};

std::atomic<int> g_interrupts{0};
extern "C" void on_sigint(int) { g_interrupts.fetch_add(1); }

// Line reader on fd 0 that polls, so that Ctrl-C and a dead stage loop are noticed while waiting.
class LineReader {
 public:
  enum Result { kLine, kEof, kInterrupted, kStopped };
  Result read(std::string& line, int interrupts_seen, const std::atomic<bool>& stop) {
    while (true) {
      const auto nl = buf_.find('\n');
      if (nl != std::string::npos) {
        line = buf_.substr(0, nl);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        buf_.erase(0, nl + 1);
        return kLine;
      }
      if (eof_) {
        if (buf_.empty()) return kEof;
        line.swap(buf_);
        buf_.clear();
        return kLine;
      }
      if (g_interrupts.load() != interrupts_seen) return kInterrupted;
      if (stop) return kStopped;
      pollfd p{0, POLLIN, 0};
      const int r = poll(&p, 1, 100);
      if (r <= 0) continue;  // timeout or EINTR
      char chunk[4096];
      const ssize_t n = ::read(0, chunk, sizeof(chunk));
      if (n > 0)
        buf_.append(chunk, static_cast<size_t>(n));
      else if (n == 0 || errno != EINTR)
        eof_ = true;
    }
  }

 private:
  std::string buf_;
  bool eof_ = false;
};

struct Repl {
  Scheduler& sched;
  RequestRouter& router;
  const ChatGLMTokenizer& tok;
  SamplingParams params;
  const std::atomic<bool>& stop;
  ChatHistory history;

  void print_history() {
    if (history.empty()) {
      std::cout << "(no history)" << std::endl;
      return;
    }
    for (size_t i = 0; i < history.size(); ++i)
      std::cout << "[Round " << i << "]\nuser: " << history[i].first << "\nassistant: " << history[i].second << "\n";
    std::cout << std::flush;
  }

  // Streams one answer; returns false when the stage loop died.
  bool answer(const std::string& query) {
    Request r;
    r.id = router.new_request_id("chat-");
    r.params = params;
    for (int id : tok.encode(build_chat_prompt(history, query))) r.input_ids.push_back(id);
    auto stream = router.open(r.id);
    const std::string id = r.id;
    stream->seq_id = sched.submit(std::move(r));
    const int interrupts = g_interrupts.load();
    bool cancel_sent = false;
    ChoiceText text(tok, params.stop);  // the answer, cut before a stop string
    TokenEvent ev;
    std::cout << "ChatGLM: " << std::flush;
    while (true) {
      if (!cancel_sent && g_interrupts.load() != interrupts) {
        sched.cancel(stream->seq_id);
        cancel_sent = true;
      }
      if (!stream->next(ev, std::chrono::milliseconds(50))) continue;
      if (ev.token >= 0 && !(ev.finished && ev.finish_reason == "stop")) {
        if (text.push(static_cast<int>(ev.token))) {  // a stop string: the answer ends here
          if (!ev.finished) sched.cancel(stream->seq_id);
          ev.finished = true;
          ev.finish_reason = "stop";
        }
        std::cout << text.take_stable() << std::flush;
      }
      if (ev.finished) break;
    }
    router.close(id);
    text.finish();
    std::cout << text.take_stable();
    if (ev.finish_reason == "cancelled") {
      std::cout << "\n(answer cancelled)" << std::endl;
    } else if (ev.finish_reason == "error") {
      std::cout << std::endl;
      spdlog::error("chat: {}", ev.error);
      if (ev.error.find("does not fit") != std::string::npos)
        std::cout << "(the conversation no longer fits the KV cache: /reset to start over)" << std::endl;
      if (stop) return false;
    } else {
      std::cout << std::endl;
      history.emplace_back(query, postprocess_response(text.text()));
    }
    return true;
  }

  void loop() {
    LineReader in;
    std::string line;
    while (true) {
      std::cout << "\nuser> " << std::flush;
      const int interrupts = g_interrupts.load();
      const auto r = in.read(line, interrupts, stop);
      if (r != LineReader::kLine) {
        std::cout << std::endl;
        return;
      }
      if (line == "/exit" || line == "/quit") return;
      if (line == "/reset") {
        history.clear();
        std::cout << "(history cleared)" << std::endl;
        continue;
      }
      if (line == "/history") {
        print_history();
        continue;
      }
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      if (!answer(line)) return;
    }
  }
};

void run_chat(ChatOptions o) {
  RequestRouter router;
  auto session = Session::create(o.session, router.callback());
  if (!session) return;
  if (!session->ctx().is_first_stage()) {
    session->run();
    return;
  }
  const std::string tok_path = o.tokenizer.empty() ? session->model_dir() + "/ice_text.model" : o.tokenizer;
  GLMPIPE_CHECK(access(tok_path.c_str(), R_OK) == 0)
      << "chat needs a tokenizer: " << tok_path << " is missing (put ice_text.model in the model dir or use --tokenizer)";
  auto tok = ChatGLMTokenizer::load(tok_path);
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  Scheduler& sched = session->runner().scheduler();
  std::atomic<bool> stop{false};
  Repl repl{sched, router, tok, o.sampling.over(session->deployment().generation), stop, {}};
  std::thread t([&] {
    try {
      repl.loop();
    } catch (const std::exception& e) {
      spdlog::error("chat: {}", e.what());
    }
    sched.request_shutdown();
  });
  try {
    session->run();
  } catch (...) {
    stop = true;
    router.fail_all("the pipeline failed");
    t.join();
    throw;
  }
  t.join();
}

CommandRegistrar reg("chat", "Interactive chat on stdin/stdout (/reset, /history, /exit; Ctrl-C cancels an answer)",
                     [](CLI::App& sub) {
  auto o = std::make_shared<ChatOptions>();
  add_session_options(sub, o->session);
  o->sampling.add_to(sub);
  sub.add_option("--tokenizer", o->tokenizer, "ice_text.model path (default: MODEL_DIR/ice_text.model)");
  sub.callback([o] { run_chat(*o); });
});

}  // namespace
}  // namespace glmpipe
