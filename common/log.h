// Logging: spdlog, configured once per process with a "[r{rank}/{world} s{stage}]" prefix so that
// interleaved output of a pipeline says who is speaking. Single-process runs show "[r0/1 s0]".
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace glmpipe {

// (Re)configures the default logger. Call once at start-up and again when the stage is known.
// Logs go to stderr so that stdout stays machine-readable (ids, JSON, plan tables).
void init_logging(int rank = 0, int world = 1, int stage = 0);

// "debug" | "info" | "warn" | "error"; also read from GLMPIPE_LOG_LEVEL by init_logging.
void set_log_level(const std::string& level);

}  // namespace glmpipe
