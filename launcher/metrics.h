// Server metrics in the Prometheus text exposition format (version 0.0.4). Counters and
// histograms are updated from HTTP threads; gauges that live elsewhere (queue length, stage
// timings, RSS) are sampled when /metrics is rendered.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "stage/stage_runner.h"

namespace glmpipe {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);
  // "# HELP/# TYPE" + _bucket{le=...} (cumulative), _sum, _count lines.
  std::string render(const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket, non-cumulative; last = +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct ServerMetrics {
  std::atomic<uint64_t> requests_total{0};       // chat completion requests received
  std::atomic<uint64_t> request_errors_total{0};  // answered with 4xx/5xx
  std::atomic<uint64_t> generated_tokens_total{0};
  std::atomic<int64_t> in_flight{0};  // submitted completions not yet finished
  Histogram time_to_first_token{{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}};
  Histogram inter_token{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}};
};

// Values sampled at render time.
struct MetricsSnapshot {
  int64_t queue_length = 0;
  int64_t active_sequences = 0;
  int stage = 0;
  const StageStats* stats = nullptr;  // the local runner's (read racily: plain doubles)
};

std::string render_metrics(const ServerMetrics& m, const MetricsSnapshot& snap);
// VmRSS of this process in bytes (0 when /proc/self/status is unreadable).
int64_t resident_memory_bytes();

}  // namespace glmpipe
