// `glmpipe batch --config C.yaml --input IN.jsonl --output OUT.jsonl [--errors ERR.jsonl]`
// (or `--model DIR` without --config: one process). Offline generation for a JSONL file of requests
// (format: launcher/batch_job.h), fed to the continuous-batching scheduler with backpressure.
//
// CONTRACT: every finished request appends one complete line {"id", "ids" (generated, eos
// included), "text" (with a tokenizer), "finish_reason", "prompt_tokens", "generated_tokens"} to
// OUT with a single write() + fsync. Re-running the same command resumes: a partial last line is
// dropped and ids already in OUT are skipped. Malformed lines (and requests the scheduler rejects)
// go to stderr and to the errors file as {"line", "id", "error"} and the job continues; exit 0 when
// the job completed, non-zero on fatal errors (unreadable input, bad config, I/O errors).
// --timings adds "token_ms": for each generated token, the milliseconds from the request's submit
// to the scheduler until the token reached the first stage (TTFT = token_ms[0]; latency benchmarks).
// Only the first pipeline stage touches the files; the other ranks just run their stage.
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "comm/world.h"
#include "common/error.h"
#include "launcher/batch_job.h"
#include "launcher/command.h"
#include "launcher/chat_setup.h"
#include "launcher/openai_response.h"
#include "launcher/session.h"
#include "model/chat/chat_format.h"

namespace glmpipe {
namespace {

using Clock = std::chrono::steady_clock;
using ojson = nlohmann::ordered_json;

struct BatchOptions {
  SessionOptions session;
  std::string input, output, errors;
  TokenizerFlags tokenizer;
  bool progress = false;
  bool no_fsync = false;
  bool timings = false;
  int64_t in_flight = 0;  // requests submitted but not finished (0 = 2 x KV slots)
};

std::string default_errors_path(const std::string& out) {
  const std::string ext = ".jsonl";
  if (out.size() > ext.size() && out.compare(out.size() - ext.size(), ext.size(), ext) == 0)
    return out.substr(0, out.size() - ext.size()) + ".errors.jsonl";
  return out + ".errors.jsonl";
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream f(path);
  GLMPIPE_CHECK(f.good()) << "cannot read the batch input " << path;
  std::vector<std::string> lines;
  std::string s;
  while (std::getline(f, s)) lines.push_back(s);
  GLMPIPE_CHECK(!f.bad()) << "error reading the batch input " << path;
  return lines;
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r") == std::string::npos; }

// The first stage's side of a batch job: files, the feeder/progress thread and the token callback.
class BatchJob {
 public:
  BatchJob(const BatchOptions& o, Session& session) : o_(o), session_(session) {
    lines_ = read_lines(o.input);
    out_ = std::make_unique<JsonlAppender>(o.output, !o.no_fsync);
    std::set<std::string> done;
    for (const auto& j : out_->recovered()) {
      std::string id = j.contains("id") ? (j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump()) : "";
      if (!id.empty()) done.insert(id);
    }
    errors_path_ = o.errors.empty() ? default_errors_path(o.output) : o.errors;
    if (access(errors_path_.c_str(), F_OK) == 0) {
      errors_ = std::make_unique<JsonlAppender>(errors_path_, !o.no_fsync);
      for (const auto& j : errors_->recovered())
        if (j.contains("line") && j["line"].is_number_integer() && j.contains("error") && j["error"].is_string())
          reported_.insert({j["line"].get<int64_t>(), j["error"].get<std::string>()});
    }
    load_tokenizer();
    defaults_ = session.deployment().generation;
    // Pre-scan: the first line with an id owns it; lines whose id is already in OUT are skipped.
    for (size_t i = 0; i < lines_.size(); ++i) {
      if (blank(lines_[i])) continue;
      const std::string id = batch_line_id(lines_[i]);
      const bool first = !id.empty() && first_line_.emplace(id, int64_t(i) + 1).second;
      if (first && done.count(id)) {
        ++skipped_;
        continue;
      }
      work_.push_back(i);
    }
    window_ = o.in_flight > 0 ? o.in_flight : std::max<int64_t>(2, 2 * session.plan().max_batch);
    show_progress_ = o.progress || isatty(STDERR_FILENO);
    if (skipped_ > 0 || out_->dropped_partial_bytes() > 0)
      spdlog::info("batch: resuming {}: {} requests already done, {} to go", o.output, skipped_, work_.size());
  }

  // Stage loop thread (may be called with the scheduler's lock held: never calls the scheduler).
  void on_token(const TokenEvent& ev) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = inflight_.find(ev.request_id);
    if (it == inflight_.end()) return;
    Pending& p = it->second;
    if (ev.token >= 0) {
      p.generated.push_back(ev.token);
      if (o_.timings) p.token_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - p.submitted).count());
      ++tokens_;
      // A stop string ends the answer here. This callback must not call the scheduler: the feeder
      // thread cancels the rest of the sequence, whose later events find no entry.
      if (p.text && !(ev.finished && ev.finish_reason == "stop") && p.text->push(static_cast<int>(ev.token))) {
        if (!ev.finished) to_cancel_.push_back(ev.seq_id);
        finish_locked(ev.request_id, "stop", "");
        return;
      }
    }
    if (ev.finished) finish_locked(ev.request_id, ev.finish_reason, ev.error);
  }

  // Writes a finished request's line (or its error) and retires it.
  void finish_locked(const std::string& request_id, const std::string& reason, const std::string& error) {
    auto it = inflight_.find(request_id);
    Pending& p = it->second;
    if (reason == "error") {
      report_error_locked(p.line, p.id_value, error);
    } else {
      ojson j;
      j["id"] = p.id_value;
      j["ids"] = p.generated;
      if (p.text && p.text->stopped()) {
        j["text"] = chat_->reply_text(p.text->text());  // cut before the stop string
      } else if (chat_) {
        std::vector<int> ids(p.generated.begin(), p.generated.end());
        j["text"] = chat_->parse_reply(ids, /*tools_offered=*/false).content;
      }
      j["finish_reason"] = reason;
      j["prompt_tokens"] = p.prompt_tokens;
      j["generated_tokens"] = static_cast<int64_t>(p.generated.size());
      if (o_.timings) j["token_ms"] = p.token_ms;
      out_->append(j);
      ++ok_;
    }
    ++done_;
    inflight_.erase(it);
    cv_.notify_all();
  }

  // Cancels the sequences stop strings ended (outside mu_: the stage loop calls on_token with the
  // scheduler's lock held, so the order is scheduler → mu_, never the reverse).
  void cancel_stopped(Scheduler& sched, std::unique_lock<std::mutex>& lock) {
    if (to_cancel_.empty()) return;
    std::vector<int64_t> ids;
    ids.swap(to_cancel_);
    lock.unlock();
    for (int64_t id : ids) sched.cancel(id);
    lock.lock();
  }

  // Starts the feeder (which also draws the progress bar); it requests shutdown after the last submit.
  void start(Scheduler& sched) {
    t0_ = Clock::now();
    feeder_ = std::thread([this, &sched] {
      try {
        feed(sched);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        failure_ = std::current_exception();
      }
      sched.request_shutdown();
      monitor(sched);
    });
  }

  // After Session::run() (or while unwinding from it): stops the feeder and prints the summary.
  void finish(bool ok) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      cv_.notify_all();
    }
    if (feeder_.joinable()) feeder_.join();
    if (!ok) return;
    if (failure_) std::rethrow_exception(failure_);
    const double s = std::chrono::duration<double>(Clock::now() - t0_).count();
    end_progress_line();
    std::cerr << fmt::format("batch: {} requests ({} ok, {} errors{}), {} tokens in {:.2f} s, {:.1f} tokens/s\n",
                             done_, ok_, done_ - ok_,
                             skipped_ ? fmt::format(", {} already in {}", skipped_, o_.output) : std::string(),
                             tokens_, s, tokens_ / std::max(s, 1e-9))
              << std::flush;
  }

 private:
  struct Pending {
    int64_t line = 0;
    nlohmann::json id_value;
    int64_t prompt_tokens = 0;
    std::vector<int64_t> generated;
    Clock::time_point submitted = Clock::now();
    std::vector<double> token_ms;  // --timings: per token, ms since `submitted`
    std::shared_ptr<ChoiceText> text;  // with stop strings: the text, cut before the first one
  };

  int64_t total() const { return static_cast<int64_t>(work_.size()); }

  void load_tokenizer() {
    const bool explicit_path = !o_.tokenizer.tokenizer.empty() || !session_.deployment().tokenizer.path.empty();
    if (!session_has_tokenizer(session_, o_.tokenizer)) return;
    try {
      chat_ = std::make_unique<ChatFormat>(session_chat_format(session_, o_.tokenizer).format);
    } catch (const Error& e) {
      if (explicit_path) throw;
      spdlog::warn("batch: {} (continuing without a tokenizer: no \"text\", no prompt lines)", e.what());
    }
  }

  void report_error_locked(int64_t line, const nlohmann::json& id, const std::string& error) {
    end_progress_line();
    spdlog::warn("{}:{}: {}{}", o_.input, line, id.is_null() ? "" : "id " + id.dump() + ": ", error);
    if (!reported_.insert({line, error}).second) return;  // already in the errors file (resumed run)
    if (!errors_) errors_ = std::make_unique<JsonlAppender>(errors_path_, !o_.no_fsync);
    ojson j;
    j["line"] = line;
    j["id"] = id;
    j["error"] = error;
    errors_->append(j);
  }

  void feed(Scheduler& sched) {
    const int64_t vocab = session_.config().vocab_size;
    for (size_t i : work_) {
      const int64_t line = static_cast<int64_t>(i) + 1;
      BatchInput in = parse_batch_line(lines_[i], line, defaults_, chat_.get(), vocab);
      if (in.error.empty() && first_line_.at(in.id) != line)
        in.error = "duplicate id \"" + in.id + "\" (first on line " + std::to_string(first_line_.at(in.id)) + ")";
      if (in.error.empty() && !in.stop_ids.empty())  // a text prompt (id prompts have no stop ids)
        in.error = official_prompt_problem(session_.config(), in.ids);
      if (in.error.empty() && !in.params.stop.empty() && !chat_)
        in.error = "\"stop\" needs a tokenizer (MODEL_DIR/tokenizer.model, ice_text.model or --tokenizer)";
      std::unique_lock<std::mutex> lock(mu_);
      if (!in.error.empty()) {
        report_error_locked(line, in.id_value, in.error);
        ++done_;
        continue;
      }
      while (!stop_ && static_cast<int64_t>(inflight_.size()) >= window_) {
        cv_.wait_for(lock, std::chrono::milliseconds(200));
        cancel_stopped(sched, lock);
        draw_progress_locked();
      }
      if (stop_) return;
      inflight_[in.id] = Pending{line, in.id_value, static_cast<int64_t>(in.ids.size()), {}, Clock::now(), {},
                                 in.params.stop.empty() ? nullptr
                                                        : std::make_shared<ChoiceText>(chat_->tokenizer_ptr(), in.params.stop)};
      lock.unlock();
      Request r;
      r.id = in.id;
      r.input_ids = std::move(in.ids);
      r.params = in.params;
      r.stop_ids = std::move(in.stop_ids);
      sched.submit(std::move(r));
      draw_progress();
    }
  }

  void monitor(Scheduler& sched) {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_ && done_ < total()) {
      cv_.wait_for(lock, std::chrono::milliseconds(200));
      cancel_stopped(sched, lock);
      draw_progress_locked();
    }
    cancel_stopped(sched, lock);
    if (done_ >= total()) {  // the final bar, before the stages log their timings
      last_draw_ = {};
      draw_progress_locked();
      end_progress_line();
    }
  }

  void end_progress_line() {
    if (bar_shown_) std::cerr << "\n" << std::flush;
    bar_shown_ = false;
  }

  void draw_progress() {
    std::lock_guard<std::mutex> lock(mu_);
    draw_progress_locked();
  }

  void draw_progress_locked() {  // at most 5 times a second
    if (!show_progress_) return;
    const auto now = Clock::now();
    if (now - last_draw_ < std::chrono::milliseconds(200)) return;
    last_draw_ = now;
    const double s = std::chrono::duration<double>(now - t0_).count();
    const double eta = done_ > 0 ? s / done_ * (total() - done_) : -1;
    std::cerr << "\r" << format_progress(done_, total(), tokens_ / std::max(s, 1e-9), eta) << std::flush;
    bar_shown_ = true;
  }

  const BatchOptions& o_;
  Session& session_;
  std::vector<std::string> lines_;
  std::vector<size_t> work_;                    // input line indices to process, in order
  std::map<std::string, int64_t> first_line_;   // id -> the (1-based) line that owns it
  std::unique_ptr<JsonlAppender> out_, errors_;
  std::string errors_path_;
  std::set<std::pair<int64_t, std::string>> reported_;  // (line, error) already in the errors file
  std::unique_ptr<ChatFormat> chat_;
  std::vector<int64_t> to_cancel_;  // seq ids a stop string ended (guarded by mu_)
  SamplingParams defaults_;
  int64_t window_ = 2, skipped_ = 0;
  bool show_progress_ = false;

  std::mutex mu_;  // guards the fields below (feeder thread vs stage loop thread)
  std::condition_variable cv_;
  std::map<std::string, Pending> inflight_;
  int64_t done_ = 0, ok_ = 0, tokens_ = 0;
  bool stop_ = false;
  bool bar_shown_ = false;  // the progress bar is on the current stderr line
  std::exception_ptr failure_;
  Clock::time_point t0_ = Clock::now(), last_draw_{};
  std::thread feeder_;
};

void run_batch(const BatchOptions& o) {
  if (!launched_by_mpi()) {  // fail before loading anything (the ranks check again)
    GLMPIPE_CHECK(access(o.input.c_str(), R_OK) == 0) << "cannot read the batch input " << o.input;
  }
  std::unique_ptr<BatchJob> job;
  BatchJob* jp = nullptr;  // set before run(): no token events before that
  auto session = Session::create(o.session, [&jp](const TokenEvent& ev) {
    if (jp) jp->on_token(ev);
  });
  if (!session) return;
  if (session->ctx().is_first_stage()) {
    job = std::make_unique<BatchJob>(o, *session);
    jp = job.get();
    job->start(session->runner().scheduler());
  }
  try {
    session->run();
  } catch (...) {
    if (job) job->finish(false);
    throw;
  }
  if (job) job->finish(true);
}

CommandRegistrar reg("batch", "Generate for every request of a JSONL file (resumable; single process or pipeline)",
                     [](CLI::App& sub) {
  auto o = std::make_shared<BatchOptions>();
  add_session_options(sub, o->session);
  sub.add_option("--input", o->input, "requests, one JSON object per line")->required();
  sub.add_option("--output", o->output, "results, appended one JSON line per finished request (resumes)")->required();
  sub.add_option("--errors", o->errors, "malformed/rejected lines (default: OUT without .jsonl + .errors.jsonl)");
  add_tokenizer_flags(sub, o->tokenizer);
  sub.add_option("--in-flight", o->in_flight, "requests submitted at once (default: 2 x KV slots)");
  sub.add_flag("--progress", o->progress, "progress bar on stderr even when it is not a terminal");
  sub.add_flag("--no-fsync", o->no_fsync, "do not fsync after every line (faster; a crash may lose recent lines)");
  sub.add_flag("--timings", o->timings, "add \"token_ms\" (ms from submit to each token) to every result line");
  sub.callback([o] { run_batch(*o); });
});

}  // namespace
}  // namespace glmpipe
