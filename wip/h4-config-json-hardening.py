import sys
root = sys.argv[1]
p = root + '/model/model_config.cpp'
s = open(p).read()
old = '''  std::ifstream in(file);
  GLMPIPE_CHECK(in.good()) << file << ": cannot open model config";
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    GLMPIPE_FAIL() << file << ": invalid JSON: " << e.what();
  }'''
new = '''  struct stat st;  // stat first: opening a FIFO would block
  GLMPIPE_CHECK(::stat(file.c_str(), &st) == 0) << file << ": cannot open model config";
  GLMPIPE_CHECK(S_ISREG(st.st_mode)) << file << ": model config is not a regular file (a FIFO or a device?)";
  std::ifstream in(file, std::ios::binary);
  GLMPIPE_CHECK(in.good()) << file << ": cannot open model config";
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);  // strict: trailing garbage after the object is an error
  } catch (const nlohmann::json::exception& e) {
    GLMPIPE_FAIL() << file << ": invalid JSON: " << e.what();
  }'''
assert old in s, 'model_config.cpp'
s = s.replace(old, new)
s = s.replace('#include <fstream>', '#include <fstream>\n#include <iterator>', 1)
open(p, 'w').write(s)

p = root + '/model/config_json.h'
s = open(p).read()
old = '''template <typename T>
T get_value(const nlohmann::json& j, const std::string& file, const char* key) {
  try {
    return j.at(key).get<T>();'''
new = '''template <typename T>
T get_value(const nlohmann::json& j, const std::string& file, const char* key) {
  if constexpr (std::is_integral<T>::value && !std::is_same<T, bool>::value) {
    // get<int>() of 4294967297 or 2.5 would wrap or truncate silently.
    const nlohmann::json& v = j.at(key);
    const bool fits = v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                      : v.is_number_integer() ? v.get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                                                    v.get<int64_t>() <= static_cast<int64_t>(std::numeric_limits<T>::max())
                                              : false;
    GLMPIPE_CHECK(fits) << file << ": key \\"" << key << "\\" = " << v.dump() << " is not an integer in ["
                        << std::numeric_limits<T>::min() << ", " << std::numeric_limits<T>::max() << "]";
  }
  try {
    return j.at(key).get<T>();'''
assert old in s, 'config_json.h get_value'
s = s.replace(old, new)
old = '''inline void check_positive(const std::string& file, const char* key, int64_t v) {
  GLMPIPE_CHECK(v > 0) << file << ": key \\"" << key << "\\" must be positive, got " << v;
}'''
new = '''// Upper bounds on config.json sizes (issue 15): far above every ChatGLM/GLM model, they keep the
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
  GLMPIPE_CHECK(v > 0) << file << ": key \\"" << key << "\\" must be positive, got " << v;
  GLMPIPE_CHECK(v <= config_limit(key))
      << file << ": key \\"" << key << "\\" = " << v << " exceeds the limit of " << config_limit(key);
}'''
assert old in s, 'check_positive'
s = s.replace(old, new)
s = s.replace('#include <string>', '#include <cstdint>\n#include <limits>\n#include <string>\n#include <type_traits>\n#include <utility>', 1)
open(p, 'w').write(s)

p = root + '/model/chatglm/chatglm_family.cpp'
s = open(p).read()
old = '''  check_positive(file, "inner_hidden_size", c.inner_hidden_size);'''
assert old in s, 'chatglm_family'
s = s.replace(old, old + '''
  check_positive(file, "max_sequence_length", c.max_sequence_length);''', 1)
open(p, 'w').write(s)
print('patched')
