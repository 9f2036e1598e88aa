// The only translation unit that includes yaml-cpp: reads a deployment file into the plain structs of
// deployment.h. Every error names the file, the key (ranks[1].device) and what is allowed; unknown
// keys are errors too, so that a typo never silently falls back to a default.
#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include <algorithm>

#include <algorithm>
#include <fstream>
#include <initializer_list>
#include <regex>
#include <sstream>

#include "common/error.h"
#include "planner/deployment.h"
#include "planner/limits.h"

namespace glmpipe {
namespace {

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& msg) const {
    GLMPIPE_FAIL() << file_ << ": " << key << ": " << msg;
    throw 0;  // unreachable: the builder above throws
  }

  void only_keys(const YAML::Node& map, const std::string& where,
                 std::initializer_list<const char*> allowed) const {
    if (!map.IsMap()) fail(where.empty() ? "(top level)" : where, "must be a mapping (" + list(allowed) + ")");
    for (const auto& kv : map) {
      std::string k = kv.first.as<std::string>();
      bool ok = false;
      for (const char* a : allowed) ok = ok || k == a;
      if (!ok) fail(join(where, k), "unknown key (allowed: " + list(allowed) + ")");
    }
  }

  std::string str(const YAML::Node& n, const std::string& key) const {
    if (!n.IsScalar()) fail(key, "must be a string");
    return n.as<std::string>();
  }
  // Bounded both ways: a value past `max` (by default what an int holds) is refused, never wrapped.
  int64_t integer(const YAML::Node& n, const std::string& key, int64_t min, int64_t max = limits::kMaxInt) const {
    int64_t v = 0;
    if (!n.IsScalar() || !YAML::convert<int64_t>::decode(n, v))
      fail(key, "\"" + scalar_text(n) + "\" is not an integer (allowed: " + std::to_string(min) + " .. " +
                    std::to_string(max) + ")");
    if (v < min) fail(key, std::to_string(v) + " is too small (allowed: >= " + std::to_string(min) + ")");
    if (v > max) fail(key, std::to_string(v) + " is too large (allowed: <= " + std::to_string(max) + ")");
    return v;
  }
  double real(const YAML::Node& n, const std::string& key, double min, double max) const {
    double v = 0;
    if (!n.IsScalar() || !YAML::convert<double>::decode(n, v))
      fail(key, "\"" + scalar_text(n) + "\" is not a number");
    if (!(v >= min && v <= max)) {
      std::ostringstream os;
      os << v << " is out of range (allowed: " << min << " .. " << max << ")";
      fail(key, os.str());
    }
    return v;
  }
  bool boolean(const YAML::Node& n, const std::string& key) const {
    bool v = false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v))
      fail(key, "\"" + scalar_text(n) + "\" is not a boolean (allowed: true, false)");
    return v;
  }
  int64_t size(const YAML::Node& n, const std::string& key) const {
    if (!n.IsScalar()) fail(key, "must be a size such as 14GiB, 15GB, 512MiB or an integer");
    int64_t v = parse_byte_size(n.as<std::string>(), file_ + ": " + key);
    if (v < 0) fail(key, "must not be negative");
    return v;
  }
  std::string choice(const YAML::Node& n, const std::string& key,
                     std::initializer_list<const char*> allowed) const {
    std::string v = n.IsScalar() ? n.as<std::string>() : std::string();
    for (const char* a : allowed)
      if (v == a) return v;
    fail(key, "\"" + scalar_text(n) + "\" is not allowed (allowed: " + list(allowed) + ")");
  }

  static std::string join(const std::string& where, const std::string& k) {
    return where.empty() ? k : where + "." + k;
  }

 private:
  static std::string list(std::initializer_list<const char*> allowed) {
    std::string s;
    for (const char* a : allowed) s += (s.empty() ? "" : ", ") + std::string(a);
    return s;
  }
  static std::string scalar_text(const YAML::Node& n) {
    if (n.IsScalar()) return n.as<std::string>();
    if (n.IsNull()) return "";
    std::ostringstream os;
    os << YAML::Dump(n);
    return os.str();
  }
  std::string file_;
};

void read_model(const Reader& rd, const YAML::Node& n, ModelSpec& m) {
  rd.only_keys(n, "model", {"path", "dtype", "quantization"});
  if (n["path"]) m.path = rd.str(n["path"], "model.path");
  if (n["dtype"]) m.dtype = rd.choice(n["dtype"], "model.dtype", {"float32", "float16", "bfloat16"});
  if (n["quantization"]) {
    m.quantization = rd.choice(n["quantization"], "model.quantization", {"none", "int8", "int4"});
    if (m.quantization == "none") m.quantization.clear();
  }
}

void read_ranks(const Reader& rd, const YAML::Node& n, std::vector<RankSpec>& ranks) {
  if (!n.IsSequence() || n.size() == 0)
    rd.fail("ranks", "must be a non-empty list of {device, max_memory, threads, host, reserve}");
  static const std::regex kDevice("cpu|cuda:[0-9]+");
  for (size_t i = 0; i < n.size(); ++i) {
    const std::string at = "ranks[" + std::to_string(i) + "]";
    const YAML::Node& r = n[i];
    rd.only_keys(r, at, {"device", "max_memory", "threads", "host", "reserve"});
    RankSpec spec;
    if (!r["device"]) rd.fail(at + ".device", "missing (allowed: cuda:N, cpu)");
    spec.device = r["device"].IsScalar() ? r["device"].as<std::string>() : "";
    if (!std::regex_match(spec.device, kDevice))
      rd.fail(at + ".device", "\"" + spec.device + "\" is not a device (allowed: cuda:N, cpu)");
    if (r["max_memory"]) {  // else from the top-level accelerate-style max_memory map (0 = not given)
      spec.max_memory = rd.size(r["max_memory"], at + ".max_memory");
      if (spec.max_memory == 0) rd.fail(at + ".max_memory", "must be > 0");
    }
    if (r["threads"]) spec.threads = static_cast<int>(rd.integer(r["threads"], at + ".threads", 0, limits::kMaxThreads));
    if (r["host"]) {
      static const std::regex kHost("[A-Za-z0-9_.:-]+");
      spec.host = rd.str(r["host"], at + ".host");
      if (!std::regex_match(spec.host, kHost)) rd.fail(at + ".host", "\"" + spec.host + "\" is not a host name");
    }
    if (r["reserve"]) spec.reserve = rd.size(r["reserve"], at + ".reserve");
    ranks.push_back(spec);
  }
}

// accelerate's max_memory dict: {0: 10GiB, 1: 10GiB, cpu: 30GiB}; an integer key N is the GPU
// cuda:N, `cpu` every cpu rank. Without `ranks:` it also lists them: the GPUs in index order, then
// one cpu rank (accelerate's execution order). A rank's own max_memory wins over the map.
void read_max_memory_map(const Reader& rd, const YAML::Node& n, bool have_ranks, std::vector<RankSpec>& ranks) {
  if (!n.IsMap() || n.size() == 0)
    rd.fail("max_memory", "must be a mapping {GPU index or cpu: size}, e.g. {0: 10GiB, 1: 10GiB, cpu: 30GiB}");
  std::vector<std::pair<std::string, int64_t>> entries;  // device -> bytes
  for (const auto& kv : n) {
    const std::string key = kv.first.as<std::string>();
    static const std::regex kGpu("[0-9]+|cuda:[0-9]+");
    std::string device;
    if (key == "cpu") device = "cpu";
    else if (std::regex_match(key, kGpu)) device = key.rfind("cuda:", 0) == 0 ? key : "cuda:" + key;
    else rd.fail("max_memory." + key, "unknown device (allowed: a GPU index 0, 1, ..., cuda:N, cpu)");
    const int64_t v = rd.size(kv.second, "max_memory." + key);
    if (v == 0) rd.fail("max_memory." + key, "must be > 0");
    entries.emplace_back(device, v);
  }
  if (!have_ranks) {
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
      if ((a.first == "cpu") != (b.first == "cpu")) return b.first == "cpu";
      return a.first.size() != b.first.size() ? a.first.size() < b.first.size() : a.first < b.first;
    });
    for (const auto& [device, bytes] : entries) {
      RankSpec r;
      r.device = device;
      r.max_memory = bytes;
      ranks.push_back(r);
    }
    return;
  }
  for (const auto& [device, bytes] : entries) {
    bool used = false;
    for (RankSpec& r : ranks)
      if (r.device == device) {
        used = true;
        if (r.max_memory == 0) r.max_memory = bytes;
      }
    if (!used) rd.fail("max_memory." + (device == "cpu" ? device : device.substr(5)), "no rank has device " + device);
  }
}

void read_placement(const Reader& rd, const YAML::Node& n, Deployment& d) {
  if (n.IsScalar()) {
    d.placement = rd.choice(n, "placement", {"auto", "balanced", "balanced_low_0", "sequential", "balanced_work"});
    return;
  }
  if (!n.IsMap() || n.size() == 0)
    rd.fail("placement", "must be one of auto, balanced, balanced_low_0, sequential, balanced_work, or a mapping "
                         "{module prefix: rank index, device or disk} (accelerate's device_map)");
  d.placement = "map";
  for (const auto& kv : n) {
    std::string key = kv.first.IsNull() ? std::string() : kv.first.as<std::string>();
    if (!kv.second.IsScalar())
      rd.fail("placement." + key, "must be a rank index (0, 1, ...), a device (cuda:N, cpu) or disk");
    d.placement_map.emplace_back(key, kv.second.as<std::string>());
  }
}

// A YAML value as the JSON a request would carry (scalars: integer, number, boolean, else string),
// so that `generation:` goes through the request validator.
nlohmann::json yaml_to_json(const YAML::Node& n) {
  if (n.IsSequence()) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& x : n) a.push_back(yaml_to_json(x));
    return a;
  }
  if (n.IsMap()) {
    nlohmann::json o = nlohmann::json::object();
    for (const auto& kv : n) o[kv.first.as<std::string>()] = yaml_to_json(kv.second);
    return o;
  }
  if (!n.IsScalar()) return nullptr;
  int64_t i = 0;
  double d = 0;
  bool b = false;
  if (n.Tag() != "!" && YAML::convert<int64_t>::decode(n, i)) return i;
  if (n.Tag() != "!" && YAML::convert<double>::decode(n, d)) return d;
  if (n.Tag() != "!" && YAML::convert<bool>::decode(n, b)) return b;
  return n.as<std::string>();
}

void read_generation(const Reader& rd, const YAML::Node& n, SamplingParams& g) {
  if (!n.IsMap()) rd.fail("generation", "must be a mapping of request fields (temperature, top_p, max_tokens, ...)");
  const auto& names = sampling_field_names();
  for (const auto& kv : n) {
    const std::string k = kv.first.as<std::string>();
    if (std::find(names.begin(), names.end(), k) == names.end()) {
      std::string allowed;
      for (const auto& a : names) allowed += (allowed.empty() ? "" : ", ") + a;
      rd.fail("generation." + k, "unknown key (allowed: " + allowed + ")");
    }
  }
  // Token counts in a deployment file are bounded like kv_cache.max_seq_len (a request's
  // max_tokens may be larger: the scheduler clamps it to the context left).
  for (const char* k : {"max_new_tokens", "max_tokens", "max_completion_tokens", "max_length"}) {
    if (!n[k]) continue;
    const nlohmann::json v = yaml_to_json(n[k]);
    if (v.is_number_integer() && v.get<int64_t>() > limits::kMaxSeqLen)
      rd.fail(std::string("generation.") + k, n[k].as<std::string>() + " is too large (at most " +
                                                  std::to_string(limits::kMaxSeqLen) + ")");
  }
  try {
    read_sampling_fields(yaml_to_json(n), g);
  } catch (const SamplingError& e) {
    rd.fail("generation." + e.field(), e.message());
  }
}

// A list of strings (a single string is a one-element list), each matching `pattern`.
std::vector<std::string> read_words(const Reader& rd, const YAML::Node& n, const std::string& key,
                                    const std::regex& pattern, const char* what) {
  std::vector<std::string> out;
  if (n.IsScalar()) {
    out.push_back(n.as<std::string>());
  } else if (n.IsSequence()) {
    for (size_t i = 0; i < n.size(); ++i) out.push_back(rd.str(n[i], key + "[" + std::to_string(i) + "]"));
  } else {
    rd.fail(key, std::string("must be a list of ") + what);
  }
  if (out.empty()) rd.fail(key, std::string("must not be empty (a list of ") + what + ")");
  for (size_t i = 0; i < out.size(); ++i)
    if (!std::regex_match(out[i], pattern))
      rd.fail(key + "[" + std::to_string(i) + "]", "\"" + out[i] + "\" is not " + what);
  return out;
}

// Multi-host keys: mpi.btl (list), mpi.tcp_if_include (list), mpi.mca (map NAME -> VALUE).
void read_mpi_network(const Reader& rd, const YAML::Node& n, MpiSpec& m) {
  static const std::regex kComponent("\\^?[a-z0-9_]+");
  static const std::regex kInterface("[A-Za-z0-9_.:/-]+");
  static const std::regex kMcaName("[A-Za-z0-9_]+");
  if (n["btl"]) m.btl = read_words(rd, n["btl"], "mpi.btl", kComponent, "a byte transport (self, vader, tcp, ...)");
  if (n["tcp_if_include"])
    m.tcp_if_include = read_words(rd, n["tcp_if_include"], "mpi.tcp_if_include", kInterface,
                                  "an interface or subnet (eth0, 10.0.0.0/24)");
  if (const YAML::Node mca = n["mca"]) {
    if (!mca.IsMap()) rd.fail("mpi.mca", "must be a mapping of MCA parameter names to values (e.g. {plm_rsh_agent: ssh})");
    for (const auto& kv : mca) {
      const std::string name = kv.first.as<std::string>();
      const std::string key = "mpi.mca." + name;
      if (!std::regex_match(name, kMcaName)) rd.fail(key, "is not an MCA parameter name (letters, digits, _)");
      if (name == "btl") rd.fail(key, "give the transports as mpi.btl: [self, vader, tcp]");
      if (!kv.second.IsScalar() || kv.second.as<std::string>().empty()) rd.fail(key, "must be a non-empty scalar value");
      for (const auto& seen : m.mca)
        if (seen.first == name) rd.fail(key, "given twice");
      m.mca.emplace_back(name, kv.second.as<std::string>());
    }
  }
}

void read_mpi(const Reader& rd, const YAML::Node& n, MpiSpec& m) {
  rd.only_keys(n, "mpi", {"extra_args", "hostfile", "bind_to_core", "micro_batches", "liveness_timeout_s", "btl",
                          "tcp_if_include", "mca"});
  if (n["extra_args"]) {
    const YAML::Node& a = n["extra_args"];
    if (!a.IsSequence()) rd.fail("mpi.extra_args", "must be a list of strings");
    for (size_t i = 0; i < a.size(); ++i)
      m.extra_args.push_back(rd.str(a[i], "mpi.extra_args[" + std::to_string(i) + "]"));
  }
  if (n["hostfile"]) m.hostfile = rd.str(n["hostfile"], "mpi.hostfile");
  read_mpi_network(rd, n, m);
  if (n["bind_to_core"]) m.bind_to_core = rd.boolean(n["bind_to_core"], "mpi.bind_to_core");
  if (n["micro_batches"])
    m.micro_batches = static_cast<int>(rd.integer(n["micro_batches"], "mpi.micro_batches", 0, limits::kMaxMicroBatches));
  if (n["liveness_timeout_s"])
    m.liveness_timeout_s = rd.real(n["liveness_timeout_s"], "mpi.liveness_timeout_s", 0.1, 86400);
}

void read_sections(const Reader& rd, const YAML::Node& root, Deployment& d) {
  rd.only_keys(root, "", {"model", "ranks", "placement", "kv_cache", "reserve", "gpu_reserve", "cpu_reserve",
                          "disk", "generation", "mpi", "max_memory", "rope_mode", "tokenizer"});
  if (!root["model"]) rd.fail("model", "missing (e.g. model: {path: /models/chatglm-6b, dtype: float16})");
  read_model(rd, root["model"], d.model);
  // How rope_ratio is meant (ChatGLM2/3, GLM-4), overriding what the checkpoint suggests.
  if (root["rope_mode"])
    d.model.rope_mode = rd.choice(root["rope_mode"], "rope_mode", {"base_scale", "position_interpolation"});
  if (!root["ranks"] && !root["max_memory"])
    rd.fail("ranks", "missing (e.g. ranks: [{device: cuda:0, max_memory: 14GiB}], or accelerate's "
                     "max_memory: {0: 14GiB, cpu: 30GiB})");
  if (root["ranks"]) read_ranks(rd, root["ranks"], d.ranks);
  if (root["max_memory"]) read_max_memory_map(rd, root["max_memory"], bool(root["ranks"]), d.ranks);
  for (size_t i = 0; i < d.ranks.size(); ++i)
    if (d.ranks[i].max_memory == 0)
      rd.fail("ranks[" + std::to_string(i) + "].max_memory",
              "missing (the bytes this rank may use, e.g. 14GiB; or a top-level max_memory: {GPU index or cpu: size})");
  if (root["placement"]) read_placement(rd, root["placement"], d);
  if (const YAML::Node kv = root["kv_cache"]) {
    rd.only_keys(kv, "kv_cache", {"max_batch", "max_seq_len", "prefill_chunk"});
    if (kv["prefill_chunk"])
      d.kv_cache.prefill_chunk = rd.integer(kv["prefill_chunk"], "kv_cache.prefill_chunk", 0, limits::kMaxSeqLen);
    if (kv["max_batch"]) d.kv_cache.max_batch = rd.integer(kv["max_batch"], "kv_cache.max_batch", 1, limits::kMaxBatch);
    if (kv["max_seq_len"])
      d.kv_cache.max_seq_len = rd.integer(kv["max_seq_len"], "kv_cache.max_seq_len", 1, limits::kMaxSeqLen);
  }
  if (const YAML::Node r = root["reserve"]) {
    rd.only_keys(r, "reserve", {"gpu", "cpu"});
    if (r["gpu"]) d.gpu_reserve = rd.size(r["gpu"], "reserve.gpu");
    if (r["cpu"]) d.cpu_reserve = rd.size(r["cpu"], "reserve.cpu");
  }
  if (root["gpu_reserve"]) d.gpu_reserve = rd.size(root["gpu_reserve"], "gpu_reserve");
  if (root["cpu_reserve"]) d.cpu_reserve = rd.size(root["cpu_reserve"], "cpu_reserve");
  if (const YAML::Node disk = root["disk"]) {
    rd.only_keys(disk, "disk", {"enabled", "path"});
    d.disk.enabled = disk["enabled"] ? rd.boolean(disk["enabled"], "disk.enabled") : true;
    if (disk["path"]) d.disk.path = rd.str(disk["path"], "disk.path");
  }
  if (root["generation"]) read_generation(rd, root["generation"], d.generation);
  if (root["mpi"]) read_mpi(rd, root["mpi"], d.mpi);
  if (const YAML::Node t = root["tokenizer"]) {
    rd.only_keys(t, "tokenizer", {"path", "chat_family"});
    if (t["path"]) d.tokenizer.path = rd.str(t["path"], "tokenizer.path");
    if (t["chat_family"])
      d.tokenizer.chat_family =
          rd.choice(t["chat_family"], "tokenizer.chat_family", {"chatglm", "chatglm2", "chatglm3", "glm4"});
  }
}

}  // namespace

Deployment parse_deployment(const std::string& yaml_text, const std::string& source_name) {
  Reader rd(source_name);
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    GLMPIPE_FAIL() << source_name << ":" << e.mark.line + 1 << ":" << e.mark.column + 1
                   << ": not valid YAML: " << e.msg;
  }
  if (!root.IsMap()) rd.fail("(top level)", "must be a mapping with model:, ranks:, placement:");
  Deployment d;
  d.source_file = source_name;
  try {
    read_sections(rd, root, d);
  } catch (const YAML::Exception& e) {  // e.g. a non-scalar map key
    GLMPIPE_FAIL() << source_name << ":" << e.mark.line + 1 << ": " << e.msg;
  }
  return d;
}

Deployment load_deployment(const std::string& yaml_path) {
  std::ifstream f(yaml_path);
  GLMPIPE_CHECK(f.good()) << yaml_path << ": cannot open the deployment file";
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_deployment(ss.str(), yaml_path);
}

}  // namespace glmpipe
