#include "comm/failure.h"

#include <cstdlib>
#include <exception>

#include "comm/world.h"
#include "common/log.h"

namespace glmpipe {

namespace {
int g_rank = 0;
int g_world = 1;

[[noreturn]] void on_terminate() {
  std::string what = "std::terminate called without an active exception";
  if (auto ep = std::current_exception()) {
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = std::string("uncaught exception: ") + e.what();
    } catch (...) {
      what = "uncaught non-standard exception";
    }
  }
  spdlog::critical("{}", failure_message(what));
  spdlog::default_logger()->flush();
  abort_world_if_initialized(1);
  std::abort();
}
}  // namespace

std::string failure_message(const std::string& what) {
  return "rank " + std::to_string(g_rank) + "/" + std::to_string(g_world) + " (stage " +
         std::to_string(g_rank) + ") failed: " + what;
}

void install_failure_handlers(const RankContext& ctx) {
  g_rank = ctx.rank();
  g_world = ctx.world();
  std::set_terminate(on_terminate);
}

int run_rank_guarded(const std::function<void()>& body, int abort_code) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    spdlog::error("{}", failure_message(e.what()));
  } catch (...) {
    spdlog::error("{}", failure_message("unknown exception"));
  }
  spdlog::default_logger()->flush();
  abort_world_if_initialized(abort_code);
  return abort_code;
}

}  // namespace glmpipe
