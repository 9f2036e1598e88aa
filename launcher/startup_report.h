// Start-up that informs: while the ranks load their shards, rank 0 shows one progress line for the
// whole pipeline; once every rank is ready, rank 0 prints one start-up summary: the plan table,
// then per stage the load time, the weights loaded, the planned memory (weights + KV cache +
// activations) and the measured peak RSS of that rank.
//
//   StartupReporter rep(ctx, transport, plan, StartupReporter::stderr_is_terminal());
//   shard.load(ckpt, [&](const LoadProgress& p) { rep.on_progress(p); });
//   ... allocate the KV cache ...
//   rep.finish(my_numbers);   // rank 0: waits for every rank's numbers, prints the summary
//
// Other ranks send their progress (at most every 100 ms, plus the first and last step) and their
// final numbers to rank 0 over the transport (Tag::kStartup, int64 messages of kStartupFields).
// Rank 0 draws the progress line on stderr with '\r' when the user's stderr is a terminal
// (GLMPIPE_STDERR_TTY=1, set by the launcher before it execs mpirun, whose ranks see pipes);
// otherwise it logs milestones (each quarter of the bytes, each rank done) so that logs stay
// readable.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "comm/rank_context.h"
#include "comm/transport.h"
#include "model/shard.h"
#include "planner/plan.h"

namespace glmpipe {

// One rank's start-up numbers.
struct RankStartup {
  LoadProgress progress;
  bool done = false;
  int64_t load_us = 0;       // checkpoint open + shard load, microseconds
  int64_t start_rss = 0;     // VmRSS before loading
  int64_t peak_rss = 0;      // VmHWM once loaded and the KV cache allocated
  int64_t loaded_bytes = 0;  // parameter bytes held
  int64_t threads = 0;       // intra-op threads
};

// The baseline a rank's memory growth is measured from, taken just before it loads (session.cpp):
//   * fixes glibc's mmap threshold at kMmapThreshold: tensors of 4 MiB and more are mmapped and
//     given back on free. glibc's default threshold grows with the largest block freed (up to
//     32 MiB), after which freed prefill buffers stay in a fragmented heap: peak RSS then passed
//     the live bytes of a 510-token prefill by 30-60 MiB, by an amount that depended on history.
//     Below 4 MiB (decode steps, micro-batches of up to ~64 rows) the heap is kept: no page faults;
//   * resets VmHWM (/proc/self/clear_refs "5"), so that the peak counts only what comes after
//     (MPI start-up, config parsing and the plan no longer lift it);
//   * returns VmRSS in bytes (0 when /proc is unavailable).
constexpr int64_t kMmapThreshold = int64_t{4} << 20;
int64_t reset_memory_baseline();
// VmRSS / VmHWM ("VmRSS:", "VmHWM:") of this process in bytes (0 when unavailable).
int64_t proc_status_bytes(const char* key);

class StartupReporter {
 public:
  // `transport` may be null for a single process.
  StartupReporter(const RankContext& ctx, Transport* transport, const Plan& plan, bool draw_bar);
  ~StartupReporter();

  // The loader's callback (Shard::load): this rank's progress.
  void on_progress(const LoadProgress& p);
  // This rank is ready. Other ranks send `mine` to rank 0; rank 0 waits (up to `timeout`) for every
  // rank, ends the progress line and, for a pipeline, prints summary() to stderr.
  void finish(const RankStartup& mine, std::chrono::seconds timeout = std::chrono::seconds(600));

  const std::vector<RankStartup>& ranks() const { return ranks_; }  // rank 0, after finish()
  // The plan table plus one line per stage (rank 0's text, for tests and logs).
  static std::string summary(const Plan& plan, const std::vector<RankStartup>& ranks);
  // True when the user's stderr is a terminal: GLMPIPE_STDERR_TTY=1, or isatty(2) when unset.
  static bool stderr_is_terminal();

 private:
  void send(const RankStartup& r, bool force);
  void take(const Received& msg);  // rank 0: one report from another rank
  void poll();                     // rank 0: every report that has arrived, without blocking
  void show(bool final);           // rank 0: redraw the line or log a milestone

  const RankContext& ctx_;
  Transport* transport_;
  const Plan& plan_;
  bool draw_bar_;
  std::vector<RankStartup> ranks_;                // rank 0: everyone's latest numbers
  std::unique_ptr<PendingRecv> rx_;               // rank 0: the posted receive
  std::vector<std::unique_ptr<PendingOp>> sends_; // other ranks: reports in flight
  std::chrono::steady_clock::time_point last_send_, last_draw_;
  int milestone_ = 0;                             // rank 0: quarters of the bytes already logged
  bool line_open_ = false;                        // rank 0: a '\r' line is on the terminal
};

}  // namespace glmpipe
