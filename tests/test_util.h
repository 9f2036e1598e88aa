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

}  // namespace glmpipe::test
