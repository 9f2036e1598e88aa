// glmpipe: one executable, subcommands registered by launcher/cmd_*.cpp (see command.h).
#include <algorithm>
#include <cstdio>
#include <exception>

#include "common/error.h"
#include "common/log.h"
#include "launcher/command.h"

namespace glmpipe {
std::vector<CommandSpec>& command_registry() {
  static std::vector<CommandSpec> registry;
  return registry;
}
static int g_exit_code = 0;
void set_exit_code(int code) { g_exit_code = code; }
int exit_code() { return g_exit_code; }
// Defined in comm/ when linked with MPI: aborts the whole job if MPI is live (so no rank hangs).
void abort_world_if_initialized(int code);
}  // namespace glmpipe

int main(int argc, char** argv) {
  glmpipe::init_logging();
  glmpipe::original_argv().assign(argv, argv + argc);
  CLI::App app{"glmpipe: pipeline-parallel ChatGLM inference (one process per stage, MPI/NCCL)"};
  app.require_subcommand(1);
  auto& registry = glmpipe::command_registry();
  std::sort(registry.begin(), registry.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  for (auto& cmd : registry) cmd.setup(*app.add_subcommand(cmd.name, cmd.help));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const glmpipe::Error& e) {
    spdlog::error("{}", e.what());
    glmpipe::abort_world_if_initialized(1);
    return 1;
  } catch (const std::exception& e) {
    spdlog::error("unexpected error: {}", e.what());
    glmpipe::abort_world_if_initialized(1);
    return 1;
  }
  return glmpipe::exit_code();
}
