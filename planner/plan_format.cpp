// Plan::to_table (hf_device_map-like unit list + bytes per stage) and Plan::to_json.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "planner/plan.h"

namespace glmpipe {

std::string Plan::to_table() const {
  std::ostringstream os;
  os << "placement " << strategy << ", dtype " << dtype << (quantization.empty() ? "" : " " + quantization)
     << ", kv_cache " << max_batch << " x " << max_seq_len << " tokens, model " << model_source << "\n";
  if (kv_bytes_per_token > 0)
    os << "model family " << model_family << ": KV cache " << format_bytes(kv_bytes_per_token) << " per token ("
       << kv_bytes_per_token << " B: K+V, " << kv_heads << " KV heads x " << head_dim << ", all layers)\n";
  os << "\n";
  char line[512];
  std::snprintf(line, sizeof line, "%-32s %5s  %s\n", "unit", "rank", "device");
  os << line;
  for (const StagePlan& s : stages)
    for (const std::string& u : s.units) {
      std::snprintf(line, sizeof line, "%-32s %5d  %s%s\n", u.c_str(), s.rank, s.device.c_str(),
                    s.on_disk(u) ? " (disk, mmapped)" : "");
      os << line;
    }
  os << "\n";
  int64_t total_work = 0, max_work = 0;
  std::snprintf(line, sizeof line, "%4s %-8s %-8s %-14s %11s %11s %11s %11s %11s %11s %11s %11s %11s\n", "rank",
                "device", "host", "blocks", "weights", "mmapped", "kv_cache", "activations", "reserve",
                "total", "budget", "headroom", "work/token");
  os << line;
  for (const StagePlan& s : stages) {
    std::string blocks = std::string(s.has_embedding ? "E " : "") +
                         (s.num_layers() ? std::to_string(s.layer_begin) + "-" + std::to_string(s.layer_end - 1)
                                         : std::string("-")) +
                         (s.has_head ? " H" : "");
    const StageBytes& b = s.bytes;
    std::snprintf(line, sizeof line, "%4d %-8s %-8s %-14s %11s %11s %11s %11s %11s %11s %11s %11s %11s\n", s.rank,
                  s.device.c_str(), s.host.empty() ? "-" : s.host.c_str(), blocks.c_str(),
                  format_bytes(b.weights).c_str(), format_bytes(b.mmapped).c_str(),
                  format_bytes(b.kv_cache).c_str(), format_bytes(b.activations).c_str(),
                  format_bytes(b.reserve).c_str(), format_bytes(b.total).c_str(),
                  format_bytes(b.budget).c_str(), format_bytes(b.headroom).c_str(), format_bytes(b.work).c_str());
    os << line;
    total_work += b.work;
    max_work = std::max(max_work, b.work);
  }
  os << "(blocks: E = embedding, A-B = transformer.layers.A..B, H = final_layernorm + lm_head; work/token = "
        "bytes read per decode step: blocks, final_layernorm + lm_head, one embedding row)\n";
  if (stages.size() > 1 && max_work > 0) {
    std::snprintf(line, sizeof line,
                  "per-token work: slowest stage %.1f%% of %s; with M >= S micro-batches of compute-bound rows on "
                  "equal ranks at most %.2fx one process (placement balanced_work minimises the slowest stage)\n",
                  100.0 * static_cast<double>(max_work) / static_cast<double>(total_work), format_bytes(total_work).c_str(),
                  static_cast<double>(total_work) / static_cast<double>(max_work));
    os << line;
  }
  return os.str();
}

std::string Plan::to_json() const {
  nlohmann::ordered_json j;
  j["strategy"] = strategy;
  j["dtype"] = dtype;
  j["quantization"] = quantization;
  j["max_batch"] = max_batch;
  j["max_seq_len"] = max_seq_len;
  j["model_source"] = model_source;
  j["model_family"] = model_family;
  j["kv_heads"] = kv_heads;
  j["head_dim"] = head_dim;
  j["kv_bytes_per_token"] = kv_bytes_per_token;
  j["num_stages"] = stages.size();
  nlohmann::ordered_json arr = nlohmann::ordered_json::array();
  nlohmann::ordered_json device_map = nlohmann::ordered_json::object();
  for (const StagePlan& s : stages) {
    nlohmann::ordered_json st;
    st["rank"] = s.rank;
    st["device"] = s.device;
    st["host"] = s.host;
    st["threads"] = s.threads;
    st["has_embedding"] = s.has_embedding;
    st["layer_begin"] = s.layer_begin;
    st["layer_end"] = s.layer_end;
    st["has_head"] = s.has_head;
    st["disk_offload"] = s.disk_offload;
    st["units"] = s.units;
    st["disk_units"] = s.disk_units;
    const StageBytes& b = s.bytes;
    st["disk"] = b.mmapped;
    st["bytes"] = {{"weights", b.weights},   {"mmapped", b.mmapped}, {"disk", b.mmapped}, {"disk_window", b.disk_window}, {"kv_cache", b.kv_cache},
                   {"activations", b.activations}, {"reserve", b.reserve}, {"total", b.total},
                   {"budget", b.budget},     {"headroom", b.headroom}, {"work", b.work}};
    arr.push_back(st);
    for (const std::string& u : s.units) device_map[u] = s.rank;
  }
  j["stages"] = arr;
  j["device_map"] = device_map;
  return j.dump(2);
}

// Spelled like Python's json.dumps(model.hf_device_map) (", " and ": " separators), so that the
// two can be compared as text.
std::string Plan::to_hf_device_map() const {
  std::string out = "{";
  for (const StagePlan& s : stages)
    for (const std::string& u : s.units) {
      nlohmann::json v;
      if (s.on_disk(u)) v = "disk";
      else if (s.device.rfind("cuda:", 0) == 0) v = std::stoi(s.device.substr(5));
      else v = s.device;
      out += (out.size() > 1 ? ", " : "") + nlohmann::json(u).dump() + ": " + v.dump();
    }
  return out + "}";
}

}  // namespace glmpipe
