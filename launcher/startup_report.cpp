#include "launcher/startup_report.h"

#include <malloc.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "common/error.h"

namespace glmpipe {

namespace {

using Clock = std::chrono::steady_clock;

// Wire layout of a report: int64 [kStartupFields].
enum Field { kDone, kTensorsDone, kTensorsTotal, kBytesDone, kBytesTotal, kLoadUs, kStartRss, kPeakRss,
             kLoadedBytes, kThreads, kStartupFields };

at::Tensor encode(const RankStartup& r) {
  at::Tensor t = at::zeros({kStartupFields}, at::kLong);
  int64_t* v = t.data_ptr<int64_t>();
  v[kDone] = r.done;
  v[kTensorsDone] = r.progress.tensors_done;
  v[kTensorsTotal] = r.progress.tensors_total;
  v[kBytesDone] = r.progress.bytes_done;
  v[kBytesTotal] = r.progress.bytes_total;
  v[kLoadUs] = r.load_us;
  v[kStartRss] = r.start_rss;
  v[kPeakRss] = r.peak_rss;
  v[kLoadedBytes] = r.loaded_bytes;
  v[kThreads] = r.threads;
  return t;
}

RankStartup decode(const at::Tensor& t) {
  const int64_t* v = t.data_ptr<int64_t>();
  RankStartup r;
  r.done = v[kDone] != 0;
  r.progress = {v[kTensorsDone], v[kTensorsTotal], v[kBytesDone], v[kBytesTotal]};
  r.load_us = v[kLoadUs];
  r.start_rss = v[kStartRss];
  r.peak_rss = v[kPeakRss];
  r.loaded_bytes = v[kLoadedBytes];
  r.threads = v[kThreads];
  return r;
}

std::string mib(int64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f MiB", bytes / 1048576.0);
  return b;
}

}  // namespace

int64_t proc_status_bytes(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(std::strlen(key))) * 1024;
  return 0;
}

int64_t reset_memory_baseline() {
  mallopt(M_MMAP_THRESHOLD, static_cast<int>(kMmapThreshold));  // also stops the dynamic adjustment
  std::ofstream("/proc/self/clear_refs") << "5";  // VmHWM := VmRSS (Linux >= 4.0); ignored when absent
  return proc_status_bytes("VmRSS:");
}

bool StartupReporter::stderr_is_terminal() {
  if (const char* v = std::getenv("GLMPIPE_STDERR_TTY")) return std::strcmp(v, "1") == 0;
  return isatty(STDERR_FILENO) != 0;
}

StartupReporter::StartupReporter(const RankContext& ctx, Transport* transport, const Plan& plan, bool draw_bar)
    : ctx_(ctx), transport_(transport), plan_(plan), draw_bar_(draw_bar) {
  GLMPIPE_CHECK(ctx.world() == 1 || transport) << "rank " << ctx.rank() << ": start-up reports need a transport";
  if (ctx.rank() == 0) ranks_.resize(ctx.world());
  if (ctx.rank() == 0 && ctx.world() > 1) rx_ = transport_->irecv(kAnySource, Tag::kStartup);
}

StartupReporter::~StartupReporter() {
  if (line_open_) std::cerr << std::endl;
}

void StartupReporter::on_progress(const LoadProgress& p) {
  if (ctx_.rank() != 0) {
    RankStartup r;
    r.progress = p;
    send(r, p.tensors_done == 0 || p.tensors_done == p.tensors_total);
    return;
  }
  ranks_[0].progress = p;
  poll();
  show(false);
}

void StartupReporter::send(const RankStartup& r, bool force) {
  const auto now = Clock::now();
  if (!force && now - last_send_ < std::chrono::milliseconds(100)) return;
  last_send_ = now;
  // Reap finished sends so that a long load does not pile them up.
  std::vector<std::unique_ptr<PendingOp>> pending;
  for (auto& op : sends_)
    if (!op->test()) pending.push_back(std::move(op));
  sends_ = std::move(pending);
  sends_.push_back(transport_->isend(0, Tag::kStartup, 0, ctx_.rank(), encode(r)));
}

void StartupReporter::take(const Received& msg) {
  GLMPIPE_CHECK(msg.source > 0 && msg.source < ctx_.world() && msg.tensor.numel() == kStartupFields)
      << "rank 0: malformed start-up report from rank " << msg.source;
  ranks_[msg.source] = decode(msg.tensor.to(at::kLong).contiguous());
  if (ranks_[msg.source].done && !draw_bar_)
    spdlog::info("rank {} ready: {} tensors ({} read) in {:.3f} s", msg.source, ranks_[msg.source].progress.tensors_done,
                 mib(ranks_[msg.source].progress.bytes_done), ranks_[msg.source].load_us / 1e6);
}

void StartupReporter::poll() {
  while (rx_ && rx_->test()) {
    take(rx_->wait());
    rx_.reset();
    int pending = 0;
    for (int r = 1; r < ctx_.world(); ++r) pending += !ranks_[r].done;
    if (pending > 0) rx_ = transport_->irecv(kAnySource, Tag::kStartup);  // none left behind once all are in
  }
}

void StartupReporter::show(bool final) {
  int64_t done = 0, total = 0;
  bool totals_known = true;
  for (const auto& r : ranks_) {
    done += r.progress.bytes_done;
    total += r.progress.bytes_total;
    totals_known = totals_known && r.progress.tensors_total > 0;
  }
  const double frac = total > 0 ? static_cast<double>(done) / total : 0.0;
  if (!draw_bar_) {  // logs: each quarter once, counted over the ranks whose sizes are known
    if (!totals_known || total == 0) return;
    const int quarter = static_cast<int>(frac * 4 + 1e-9);
    if (quarter > milestone_ && quarter < 4) spdlog::info("loading weights: {}% ({} of {})", quarter * 25, mib(done), mib(total));
    milestone_ = std::max(milestone_, quarter);
    return;
  }
  const auto now = Clock::now();
  if (!final && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  constexpr int kWidth = 24;
  const int filled = static_cast<int>(frac * kWidth);
  std::ostringstream line;
  line << "\rloading weights [" << std::string(filled, '#') << std::string(kWidth - filled, '.') << "] "
       << static_cast<int>(frac * 100) << "%  " << mib(done) << " / " << (totals_known ? mib(total) : "?");
  for (size_t r = 0; r < ranks_.size() && ranks_.size() > 1; ++r) {
    const auto& p = ranks_[r].progress;
    line << "  r" << r << " " << (p.tensors_total > 0 ? std::to_string(100 * p.bytes_done / std::max<int64_t>(p.bytes_total, 1)) + "%" : "?");
  }
  std::cerr << line.str() << "\033[K" << std::flush;  // clear what a longer earlier line left
  line_open_ = true;
}

void StartupReporter::finish(const RankStartup& mine, std::chrono::seconds timeout) {
  if (ctx_.rank() != 0) {
    RankStartup r = mine;
    r.done = true;
    send(r, true);
    for (auto& op : sends_) op->wait(std::chrono::duration_cast<Duration>(timeout));
    sends_.clear();
    return;
  }
  ranks_[0] = mine;
  ranks_[0].done = true;
  const auto deadline = Clock::now() + timeout;
  while (rx_) {
    if (Clock::now() > deadline) {
      std::string missing;
      for (int r = 1; r < ctx_.world(); ++r)
        if (!ranks_[r].done) missing += " " + std::to_string(r);
      GLMPIPE_FAIL() << "rank 0: no start-up report from rank(s)" << missing << " within " << timeout.count()
                     << " s of loading (stuck or slow storage?)";
    }
    poll();
    show(false);
    if (rx_) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  show(true);
  if (line_open_) std::cerr << std::endl;
  line_open_ = false;
  if (ctx_.world() > 1) {
    std::cerr << summary(plan_, ranks_) << std::flush;
  } else if (!plan_.stages.empty()) {  // one process: no table, the memory line alone
    const StageBytes& b = plan_.stages[0].bytes;
    const int64_t planned = b.weights + b.disk_window + b.kv_cache, growth = mine.peak_rss - mine.start_rss;
    spdlog::info("memory at start-up: planned {} (weights + disk_window + kv_cache), rss growth {} ({:+.1f}%), "
                 "peak rss {} of max_memory {}; + {} planned activations for a full-length prefill",
                 mib(planned), mib(growth), planned > 0 ? 100.0 * static_cast<double>(growth - planned) / planned : 0.0,
                 mib(mine.peak_rss), mib(b.budget), mib(b.activations));
  }
}

std::string StartupReporter::summary(const Plan& plan, const std::vector<RankStartup>& ranks) {
  std::ostringstream os;
  int64_t slowest_us = 0;
  int slowest = 0;
  for (size_t r = 0; r < ranks.size(); ++r)
    if (ranks[r].load_us > slowest_us) slowest_us = ranks[r].load_us, slowest = static_cast<int>(r);
  char head[160];
  std::snprintf(head, sizeof head, "== start-up summary: %zu stages ready, slowest load %.3f s (rank %d) ==\n",
                ranks.size(), slowest_us / 1e6, slowest);
  os << head
     << plan.to_table() << "\n";
  char line[256];
  std::snprintf(line, sizeof line, "%4s %-8s %8s %8s %12s %12s %12s %7s %12s %12s %12s %8s\n", "rank", "device", "load_s",
                "tensors", "loaded", "planned", "rss_growth", "diff", "peak_rss", "max_memory", "activations", "threads");
  os << line;
  for (size_t r = 0; r < ranks.size() && r < plan.stages.size(); ++r) {
    const RankStartup& s = ranks[r];
    const StageBytes& b = plan.stages[r].bytes;
    const int64_t planned = b.weights + b.disk_window + b.kv_cache, growth = s.peak_rss - s.start_rss;
    char diff[32];
    std::snprintf(diff, sizeof diff, "%+.1f%%", planned > 0 ? 100.0 * static_cast<double>(growth - planned) / planned : 0.0);
    std::snprintf(line, sizeof line, "%4zu %-8s %8.3f %8lld %12s %12s %12s %7s %12s %12s %12s %8lld\n", r,
                  plan.stages[r].device.c_str(), s.load_us / 1e6, static_cast<long long>(s.progress.tensors_done),
                  mib(s.loaded_bytes).c_str(), mib(planned).c_str(), mib(growth).c_str(), diff, mib(s.peak_rss).c_str(),
                  mib(b.budget).c_str(), mib(b.activations).c_str(), static_cast<long long>(s.threads));
    os << line;
  }
  os << "(planned = the plan's resident bytes once loaded: weights + disk_window + kv_cache; rss_growth = the "
        "rank's VmHWM once loaded with its KV cache allocated minus its VmRSS just before loading, where VmHWM was "
        "reset; diff = rss_growth vs planned; activations = the plan's working set of a full-length prefill and "
        "its GEMM workspace, not yet used at start-up: the `memory:` line at exit has the run's peak)\n";
  return os.str();
}

}  // namespace glmpipe
