#include "launcher/metrics.h"

#include <fstream>
#include <sstream>

namespace glmpipe {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  std::lock_guard<std::mutex> lock(mu_);
  counts_[i] += 1;
  sum_ += v;
  count_ += 1;
}

std::string Histogram::render(const std::string& name, const std::string& help) const {
  std::ostringstream s;
  s << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    s << name << "_bucket{le=\"" << bounds_[i] << "\"} " << cum << "\n";
  }
  cum += counts_.back();
  s << name << "_bucket{le=\"+Inf\"} " << cum << "\n";
  s << name << "_sum " << sum_ << "\n" << name << "_count " << count_ << "\n";
  return s.str();
}

int64_t resident_memory_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::istringstream ls(line.substr(6));
      int64_t kb = 0;
      ls >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

namespace {
template <typename T>
void metric(std::ostringstream& s, const std::string& name, const std::string& type, const std::string& help, T v) {
  s << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n" << name << " " << v << "\n";
}
}  // namespace

std::string render_metrics(const ServerMetrics& m, const MetricsSnapshot& snap) {
  std::ostringstream s;
  s.precision(9);
  metric(s, "glmpipe_requests_total", "counter", "Chat completion requests received.", m.requests_total.load());
  metric(s, "glmpipe_request_errors_total", "counter", "Requests answered with an error status.",
         m.request_errors_total.load());
  metric(s, "glmpipe_generated_tokens_total", "counter", "Tokens generated for completions.",
         m.generated_tokens_total.load());
  metric(s, "glmpipe_queue_length", "gauge", "Requests waiting for a KV-cache slot.", snap.queue_length);
  metric(s, "glmpipe_active_sequences", "gauge", "Sequences admitted and generating.", snap.active_sequences);
  if (snap.stats) {
    const StageStats& st = *snap.stats;
    const std::string l = "{stage=\"" + std::to_string(snap.stage) + "\"}";
    const std::pair<const char*, double> parts[] = {
        {"compute", st.compute_s}, {"send", st.send_s}, {"recv", st.recv_s}, {"idle", st.idle_s}};
    for (const auto& [what, v] : parts) {
      const std::string name = std::string("glmpipe_stage_") + what + "_seconds_total";
      s << "# HELP " << name << " Seconds this stage spent in " << what << ".\n# TYPE " << name << " counter\n"
        << name << l << " " << v << "\n";
    }
    s << "# HELP glmpipe_stage_micro_batches_total Micro-batches this stage ran.\n"
         "# TYPE glmpipe_stage_micro_batches_total counter\nglmpipe_stage_micro_batches_total"
      << l << " " << st.micro_batches << "\n";
  }
  s << m.time_to_first_token.render("glmpipe_time_to_first_token_seconds",
                                    "Seconds from request arrival to its first generated token.");
  s << m.inter_token.render("glmpipe_inter_token_seconds", "Seconds between consecutive generated tokens.");
  metric(s, "process_resident_memory_bytes", "gauge", "Resident memory (VmRSS) of the first stage.",
         resident_memory_bytes());
  return s.str();
}

}  // namespace glmpipe
