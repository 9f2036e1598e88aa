#include "common/sampling_params.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

namespace glmpipe {

using json = nlohmann::json;

namespace {

std::string shown(const json& v) { return v.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string num(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

[[noreturn]] void bad(const std::string& field, const std::string& msg) { throw SamplingError(field, msg); }

int64_t integer(const json& v, const std::string& field, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) bad(field, shown(v) + " is not an integer");
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    bad(field, shown(v) + " is out of range (allowed: " + std::to_string(lo) + " .. " + std::to_string(hi) + ")");
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    bad(field, shown(v) + " is out of range (allowed: " + std::to_string(lo) + " .. " + std::to_string(hi) + ")");
  return x;
}

double real(const json& v, const std::string& field) {
  if (!v.is_number()) bad(field, shown(v) + " is not a number");
  return v.get<double>();
}

void check_range(double x, const std::string& field, double lo, double hi, bool lo_open) {
  if (!(lo_open ? x > lo : x >= lo) || !(x <= hi) || !std::isfinite(x))
    bad(field, num(x) + " is out of range (allowed: " + (lo_open ? "(" : "[") + num(lo) + ", " + num(hi) + "])");
}

std::vector<std::string> stop_strings(const json& v) {
  std::vector<std::string> out;
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    if (v.size() > kMaxStopStrings)
      bad("stop", "at most " + std::to_string(kMaxStopStrings) + " stop strings (got " + std::to_string(v.size()) + ")");
    for (const auto& s : v) {
      if (!s.is_string()) bad("stop", shown(s) + " is not a string");
      out.push_back(s.get<std::string>());
    }
  } else {
    bad("stop", "must be a string or an array of up to " + std::to_string(kMaxStopStrings) + " strings");
  }
  for (const auto& s : out)
    if (s.empty()) bad("stop", "stop strings must not be empty");
  return out;
}

std::vector<std::pair<int64_t, double>> logit_bias(const json& v, int64_t vocab_size) {
  if (!v.is_object()) bad("logit_bias", "must be an object mapping token ids (as strings) to biases");
  std::vector<std::pair<int64_t, double>> out;
  for (const auto& [key, b] : v.items()) {
    size_t pos = 0;
    long long id = -1;
    try {
      id = std::stoll(key, &pos);
    } catch (...) {
      pos = 0;
    }
    if (pos == 0 || pos != key.size() || id < 0) bad("logit_bias", "\"" + key + "\" is not a token id");
    if (vocab_size > 0 && id >= vocab_size)
      bad("logit_bias", "token id " + key + " is outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
    const double x = real(b, "logit_bias");
    check_range(x, "logit_bias", -100, 100, false);
    out.emplace_back(id, x);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

const std::vector<std::string>& sampling_field_names() {
  static const std::vector<std::string> names = {
      "max_tokens", "max_completion_tokens", "max_new_tokens", "max_length", "temperature", "greedy", "top_p",
      "top_k", "repetition_penalty", "presence_penalty", "frequency_penalty", "logit_bias", "seed", "stop"};
  return names;
}

void read_sampling_fields(const json& j, SamplingParams& p, int64_t vocab_size) {
  auto has = [&](const char* k) { return j.contains(k) && !j[k].is_null(); };
  constexpr int64_t kBig = std::numeric_limits<int64_t>::max();
  for (const char* k : {"max_new_tokens", "max_tokens", "max_completion_tokens"})
    if (has(k)) p.max_new_tokens = integer(j[k], k, 1, kBig);
  if (has("max_length")) p.max_length = integer(j["max_length"], "max_length", 1, kBig);
  if (has("temperature")) {
    p.temperature = real(j["temperature"], "temperature");
    check_range(p.temperature, "temperature", 0, 100, false);
    p.greedy = p.temperature == 0;
  }
  if (has("greedy")) {
    if (!j["greedy"].is_boolean()) bad("greedy", shown(j["greedy"]) + " is not a boolean (allowed: true, false)");
    p.greedy = j["greedy"].get<bool>();
  }
  if (has("top_p")) p.top_p = real(j["top_p"], "top_p");
  if (has("top_k")) {
    p.top_k = integer(j["top_k"], "top_k", -1, kBig);
    if (p.top_k < 0) p.top_k = 0;  // -1 = all, as vLLM spells it
  }
  if (has("repetition_penalty")) p.repetition_penalty = real(j["repetition_penalty"], "repetition_penalty");
  if (has("presence_penalty")) p.presence_penalty = real(j["presence_penalty"], "presence_penalty");
  if (has("frequency_penalty")) p.frequency_penalty = real(j["frequency_penalty"], "frequency_penalty");
  if (has("logit_bias")) p.logit_bias = logit_bias(j["logit_bias"], vocab_size);
  if (has("seed")) {
    const json& s = j["seed"];
    if (!s.is_number_integer()) bad("seed", shown(s) + " is not an integer");
    p.seed = s.is_number_unsigned() ? s.get<uint64_t>() : static_cast<uint64_t>(s.get<int64_t>());
  }
  if (has("stop")) p.stop = stop_strings(j["stop"]);
  validate_sampling(p, vocab_size);
}

void validate_sampling(const SamplingParams& p, int64_t vocab_size) {
  if (p.max_new_tokens < 0) bad("max_new_tokens", std::to_string(p.max_new_tokens) + " is out of range (allowed: >= 1)");
  if (p.max_length < 1) bad("max_length", std::to_string(p.max_length) + " is out of range (allowed: >= 1)");
  check_range(p.temperature, "temperature", 0, 100, false);
  check_range(p.top_p, "top_p", 0, 1, true);
  if (p.top_k < 0) bad("top_k", std::to_string(p.top_k) + " is out of range (allowed: >= 0, 0 = all)");
  check_range(p.repetition_penalty, "repetition_penalty", 0, 100, true);
  check_range(p.presence_penalty, "presence_penalty", -2, 2, false);
  check_range(p.frequency_penalty, "frequency_penalty", -2, 2, false);
  for (const auto& [id, b] : p.logit_bias) {
    if (id < 0 || (vocab_size > 0 && id >= vocab_size))
      bad("logit_bias", "token id " + std::to_string(id) + " is outside the vocabulary");
    check_range(b, "logit_bias", -100, 100, false);
  }
  if (p.top_logprobs > kMaxTopLogprobs)
    bad("top_logprobs", std::to_string(p.top_logprobs) + " is out of range (allowed: 0 .. 20)");
  if (static_cast<int>(p.stop.size()) > kMaxStopStrings) bad("stop", "at most 4 stop strings");
}

}  // namespace glmpipe
