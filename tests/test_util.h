// Helpers shared by tests: paths from the environment ctest sets, temp dirs, running the CLI.
#pragma once

#include <string>

namespace glmpipe::test {

std::string glmpipe_bin();         // $GLMPIPE_BIN
std::string source_dir();          // $GLMPIPE_SOURCE_DIR
std::string shared_data();         // $GLMPIPE_SHARED_DATA (../shared/data), may not exist
bool file_exists(const std::string& path);
// A fresh empty directory under $GLMPIPE_TEST_TMP (or /tmp), unique per call.
std::string make_temp_dir(const std::string& tag);

struct RunResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs `cmd` with /bin/sh, capturing stdout and stderr separately.
RunResult run_command(const std::string& cmd);

// The whole file ("" when it cannot be read).
std::string read_file(const std::string& path);

// A tiny chat model in `dir` (returned): random weights (2 layers, hidden 64, seed 5), a vocab
// covering tests/data/tiny_chatglm.model, that tokenizer's special ids in config.json, and the
// tokenizer itself as ice_text.model — a complete chat model for chat/serve tests.
std::string make_tiny_chat_model(const std::string& dir);

}  // namespace glmpipe::test
