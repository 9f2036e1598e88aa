#include "common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>

namespace glmpipe {

void init_logging(int rank, int world, int stage) {
  spdlog::drop("glmpipe");
  auto logger = spdlog::stderr_color_mt("glmpipe");
  logger->set_pattern("[%H:%M:%S.%e] [r" + std::to_string(rank) + "/" + std::to_string(world) + " s" +
                      std::to_string(stage) + "] [%^%l%$] %v");
  spdlog::set_default_logger(logger);
  const char* lvl = std::getenv("GLMPIPE_LOG_LEVEL");
  set_log_level(lvl ? lvl : "info");
}

void set_log_level(const std::string& level) { spdlog::set_level(spdlog::level::from_str(level)); }

}  // namespace glmpipe
