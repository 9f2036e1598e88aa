#include "tests/test_util.h"

#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "checkpoint/tiny_model.h"
#include "model/tokenizer.h"

namespace glmpipe::test {

static std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

std::string glmpipe_bin() { return env_or("GLMPIPE_BIN", "glmpipe"); }
std::string source_dir() { return env_or("GLMPIPE_SOURCE_DIR", "."); }
std::string shared_data() { return env_or("GLMPIPE_SHARED_DATA", source_dir() + "/../shared/data"); }

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string make_temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  std::string base = env_or("GLMPIPE_TEST_TMP", "/tmp/glmpipe_test");
  std::string cmd = "mkdir -p '" + base + "'";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("cannot create " + base);
  std::string dir = base + "/" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str());
  return dir;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

RunResult run_command(const std::string& cmd) {
  std::string dir = make_temp_dir("run");
  std::string full = "( " + cmd + " ) >'" + dir + "/out' 2>'" + dir + "/err'";
  int status = std::system(full.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(dir + "/out");
  r.err = read_file(dir + "/err");
  std::system(("rm -rf '" + dir + "'").c_str());
  return r;
}

std::string make_tiny_chat_model(const std::string& dir) {
  const std::string spm = source_dir() + "/tests/data/tiny_chatglm.model";
  auto tok = ChatGLMTokenizer::load(spm);
  TinyModelOptions o;
  o.layers = 2;
  o.hidden = 64;
  o.heads = 4;
  o.vocab = (tok.vocab_size() + 63) / 64 * 64;
  o.seed = 5;
  make_tiny_model(dir, o);
  auto cfg = nlohmann::json::parse(read_file(dir + "/config.json"));
  cfg["bos_token_id"] = tok.bos_id();
  cfg["eos_token_id"] = tok.eos_id();
  cfg["gmask_token_id"] = tok.gmask_id();
  if (tok.mask_id() >= 0) cfg["mask_token_id"] = tok.mask_id();
  if (tok.pad_id() >= 0) cfg["pad_token_id"] = tok.pad_id();
  std::ofstream(dir + "/config.json") << cfg.dump(2);
  std::system(("cp '" + spm + "' '" + dir + "/ice_text.model'").c_str());
  return dir;
}

}  // namespace glmpipe::test
