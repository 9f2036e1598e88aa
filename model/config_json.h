// Helpers shared by the families' config.json readers: required/optional keys with errors that
// name the file and the key.
#pragma once

#include <nlohmann/json.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>

#include "common/error.h"

namespace glmpipe::detail {

template <typename T>
T get_value(const nlohmann::json& j, const std::string& file, const char* key) {
  if constexpr (std::is_integral<T>::value && !std::is_same<T, bool>::value) {
    // get<int>() of 4294967297 or 2.5 would wrap or truncate silently.
    const nlohmann::json& v = j.at(key);
    const bool fits = v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                      : v.is_number_integer() ? v.get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                                                    v.get<int64_t>() <= static_cast<int64_t>(std::numeric_limits<T>::max())
                                              : false;
    GLMPIPE_CHECK(fits) << file << ": key \"" << key << "\" = " << v.dump() << " is not an integer in ["
                        << std::numeric_limits<T>::min() << ", " << std::numeric_limits<T>::max() << "]";
  }
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception& e) {
    GLMPIPE_FAIL() << file << ": key \"" << key << "\" has the wrong type (" << j.at(key).dump() << ")";
  }
  return T{};
}

template <typename T>
void required(const nlohmann::json& j, const std::string& file, const char* key, T& out) {
  GLMPIPE_CHECK(j.contains(key) && !j.at(key).is_null()) << file << ": missing required key \"" << key << "\"";
  out = get_value<T>(j, file, key);
}

template <typename T>
void optional(const nlohmann::json& j, const std::string& file, const char* key, T& out) {
  if (j.contains(key) && !j.at(key).is_null()) out = get_value<T>(j, file, key);
}

// Upper bounds on config.json sizes (issue 15): far above every ChatGLM/GLM model, they keep the
// products the model and the planner compute inside 64 bits and the planner's DP (quadratic in the
// layer count) fast.
inline int64_t config_limit(const char* key) {
  static const std::pair<const char*, int64_t> kLimits[] = {
      {"num_layers", 1024},           {"vocab_size", 1 << 22},        {"padded_vocab_size", 1 << 22},
      {"hidden_size", 1 << 16},       {"num_attention_heads", 1 << 12}, {"kv_channels", 1 << 12},
      {"inner_hidden_size", 1 << 20}, {"ffn_hidden_size", 1 << 20},   {"multi_query_group_num", 1 << 12},
      {"seq_length", 1 << 24},        {"max_sequence_length", 1 << 24}};
  for (const auto& [k, v] : kLimits)
    if (std::string(k) == key) return v;
  return std::numeric_limits<int32_t>::max();
}

inline void check_positive(const std::string& file, const char* key, int64_t v) {
  GLMPIPE_CHECK(v > 0) << file << ": key \"" << key << "\" must be positive, got " << v;
  GLMPIPE_CHECK(v <= config_limit(key))
      << file << ": key \"" << key << "\" = " << v << " exceeds the limit of " << config_limit(key);
}

bool is_dir(const std::string& p);

}  // namespace glmpipe::detail
