// config.json <-> ModelConfig. Required keys are checked one by one so that the error names the
// missing key; optional keys fall back to the official configuration class's defaults (v1:
// inner_hidden_size = 4 * hidden). The per-family parts live in model/chatglm/ and model/chatglm2/.
#include "model/model_config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>

#include "common/error.h"
#include "model/config_json.h"

namespace glmpipe {

namespace detail {
void parse_chatglm_config(const nlohmann::json& j, const std::string& file, ModelConfig& c);
void parse_chatglm2_config(const nlohmann::json& j, const std::string& file, ModelConfig& c);
nlohmann::ordered_json chatglm_config_json(const ModelConfig& c);
nlohmann::ordered_json chatglm2_config_json(const ModelConfig& c);

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
}  // namespace detail

const char* family_name(Family f) {
  switch (f) {
    case Family::kChatGLM: return "chatglm";
    case Family::kChatGLM2: return "chatglm2";
  }
  return "?";
}

const char* rope_mode_name(RopeMode m) {
  switch (m) {
    case RopeMode::kBaseScale: return "base_scale";
    case RopeMode::kPositionInterpolation: return "position_interpolation";
  }
  return "?";
}

RopeMode parse_rope_mode(const std::string& s, const std::string& where) {
  if (s == "base_scale") return RopeMode::kBaseScale;
  if (s == "position_interpolation") return RopeMode::kPositionInterpolation;
  GLMPIPE_FAIL() << where << ": rope mode \"" << s << "\" (allowed: base_scale, position_interpolation)";
  return RopeMode::kBaseScale;
}

ModelConfig load_model_config(const std::string& path) {
  const std::string file = detail::is_dir(path) ? path + "/config.json" : path;
  struct stat st;  // stat first: opening a FIFO would block
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
  }
  GLMPIPE_CHECK(j.is_object()) << file << ": expected a JSON object";

  ModelConfig c;
  detail::required(j, file, "model_type", c.model_type);
  GLMPIPE_CHECK(c.model_type == "chatglm")
      << file << ": key \"model_type\" is \"" << c.model_type
      << "\", expected \"chatglm\" (ChatGLM-6B, ChatGLM2-6B, ChatGLM3-6B or GLM-4-9B)";
  // Family detection (chatglm2-family.md §1.1): v2+ configs carry multi_query_attention.
  if (j.contains("multi_query_attention")) {
    c.family = Family::kChatGLM2;
    detail::parse_chatglm2_config(j, file, c);
  } else {
    detail::parse_chatglm_config(j, file, c);
  }
  return c;
}

void save_model_config(const ModelConfig& c, const std::string& path) {
  const std::string file = detail::is_dir(path) ? path + "/config.json" : path;
  const nlohmann::ordered_json j =
      c.family == Family::kChatGLM ? detail::chatglm_config_json(c) : detail::chatglm2_config_json(c);
  // Written to a temporary file and renamed, so that a reader never sees half a config.
  const std::string tmp = file + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(2) << "\n";
    GLMPIPE_CHECK(out.good()) << tmp << ": cannot write";
  }
  GLMPIPE_CHECK(std::rename(tmp.c_str(), file.c_str()) == 0) << file << ": cannot write (rename failed)";
}

}  // namespace glmpipe
