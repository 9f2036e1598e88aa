// Subcommand registry. Each `glmpipe <cmd>` lives in launcher/cmd_<cmd>.cpp and registers itself:
//
//   static glmpipe::CommandRegistrar reg("plan", "Print the placement plan", [](CLI::App& sub) {
//     auto opt = std::make_shared<PlanOptions>();
//     sub.add_option("--config", opt->config, "deployment YAML")->required();
//     sub.callback([opt] { run_plan(*opt); });
//   });
//
// Callbacks throw glmpipe::Error on bad input; main() reports it and exits non-zero.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace glmpipe {

struct CommandSpec {
  std::string name;
  std::string help;
  std::function<void(CLI::App&)> setup;
};

std::vector<CommandSpec>& command_registry();

struct CommandRegistrar {
  CommandRegistrar(std::string name, std::string help, std::function<void(CLI::App&)> setup) {
    command_registry().push_back({std::move(name), std::move(help), std::move(setup)});
  }
};

// The argv this process was started with (set by main), used to re-exec under mpirun.
std::vector<std::string>& original_argv();

// Set by main() from the exit code a command wants (default 0).
void set_exit_code(int code);
int exit_code();

}  // namespace glmpipe
