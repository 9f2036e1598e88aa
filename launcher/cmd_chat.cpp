// `glmpipe chat --model DIR | --config C.yaml`: an interactive chat on the first stage. Each line
// read from stdin is a user turn (with the history, in the model's chat format: ChatGLM's rounds,
// ChatGLM3's / GLM-4's role tokens, launcher/chat_setup.h); the answer streams to stdout as tokens
// arrive and generation stops on the family's stop ids. Commands: /reset (clear history), /history (print it), /exit (or EOF).
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
#include "launcher/chat_setup.h"
#include "launcher/command.h"
#include "launcher/openai_response.h"
#include "launcher/session.h"
#include "model/chat/chat_format.h"
#include "model/tokenizer.h"
#include "stage/request_router.h"

namespace glmpipe {
namespace {

struct ChatOptions {
  SessionOptions session;
  SamplingFlags sampling;
  TokenizerFlags tokenizer;
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

// Drops the whitespace a reply starts with (ChatGLM3/GLM-4 answers begin with "\n").
class LeadingSpaceFilter {
 public:
  std::string operator()(std::string chunk) {
    if (started_) return chunk;
    const auto b = chunk.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return "";
    started_ = true;
    return chunk.substr(b);
  }

 private:
  bool started_ = false;
};

struct Repl {
  Scheduler& sched;
  RequestRouter& router;
  const ChatFormat& format;
  SamplingParams params;
  const std::atomic<bool>& stop;
  std::vector<ChatMessage> history;  // alternating user / assistant messages

  void print_history() {
    if (history.empty()) {
      std::cout << "(no history)" << std::endl;
      return;
    }
    for (size_t i = 0; i + 1 < history.size(); i += 2)
      std::cout << "[Round " << i / 2 << "]\nuser: " << history[i].content << "\nassistant: " << history[i + 1].content
                << "\n";
    std::cout << std::flush;
  }

  // Streams one answer; returns false when the stage loop died.
  bool answer(const std::string& query) {
    Request r;
    r.id = router.new_request_id("chat-");
    r.params = params;
    std::vector<ChatMessage> messages = history;
    messages.push_back({"user", query});
    for (int id : format.prompt_ids(messages)) r.input_ids.push_back(id);
    r.stop_ids = format.stop_ids();
    auto stream = router.open(r.id);
    const std::string id = r.id;
    stream->seq_id = sched.submit(std::move(r));
    const int interrupts = g_interrupts.load();
    bool cancel_sent = false;
    ChoiceText text(format.tokenizer_ptr(), params.stop);  // the answer, cut before a stop string
    LeadingSpaceFilter lead;
    std::vector<int> text_ids;
    TokenEvent ev;
    std::cout << "ChatGLM: " << std::flush;
    while (true) {
      if (!cancel_sent && g_interrupts.load() != interrupts) {
        sched.cancel(stream->seq_id);
        cancel_sent = true;
      }
      if (!stream->next(ev, std::chrono::milliseconds(50))) continue;
      if (ev.token >= 0 && !(ev.finished && ev.finish_reason == "stop")) {
        text_ids.push_back(static_cast<int>(ev.token));
        if (text.push(static_cast<int>(ev.token))) {  // a stop string: the answer ends here
          if (!ev.finished) sched.cancel(stream->seq_id);
          ev.finished = true;
          ev.finish_reason = "stop";
        }
        std::cout << lead(text.take_stable()) << std::flush;
      }
      if (ev.finished) break;
    }
    router.close(id);
    spdlog::debug("chat: answer of {} tokens, finish_reason {}", text_ids.size(), ev.finish_reason);
    text.finish();
    std::cout << lead(text.take_stable());
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
      history.push_back({"user", query});
      // Cut by a stop string: the text before it; otherwise the family's reading of the ids.
      history.push_back({"assistant", text.stopped() ? format.reply_text(text.text())
                                                     : format.parse_reply(text_ids, /*tools_offered=*/false).content});
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
  const LoadedChatFormat cf = session_chat_format(*session, o.tokenizer);
  {  // every turn's prompt has the same specials: check them once, as the official code would
    std::vector<int64_t> probe;
    for (int id : cf.format.prompt_ids({{"user", "你好"}})) probe.push_back(id);
    const std::string problem = official_prompt_problem(session->config(), probe);
    GLMPIPE_CHECK(problem.empty()) << "chat: " << problem;
  }
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  Scheduler& sched = session->runner().scheduler();
  std::atomic<bool> stop{false};
  Repl repl{sched, router, cf.format, o.sampling.over(session->deployment().generation), stop, {}};
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
  add_tokenizer_flags(sub, o->tokenizer);
  sub.callback([o] { run_chat(*o); });
});

}  // namespace
}  // namespace glmpipe
