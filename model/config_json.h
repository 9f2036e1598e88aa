// Helpers shared by the families' config.json readers: required/optional keys with errors that
// name the file and the key.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/error.h"

namespace glmpipe::detail {

template <typename T>
T get_value(const nlohmann::json& j, const std::string& file, const char* key) {
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

inline void check_positive(const std::string& file, const char* key, int64_t v) {
  GLMPIPE_CHECK(v > 0) << file << ": key \"" << key << "\" must be positive, got " << v;
}

bool is_dir(const std::string& p);

}  // namespace glmpipe::detail
