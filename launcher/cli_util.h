// Small helpers shared by subcommands: id lists, sampling flags.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/sampling_params.h"

namespace glmpipe {

// "5,6,7" → {5, 6, 7}; Error naming `what` on anything else.
std::vector<int64_t> parse_id_list(const std::string& text, const std::string& what);
std::string join_ids(const std::vector<int64_t>& ids);

// The sampling flags of a subcommand (--temperature, --top-p, ...). Only the flags given on the
// command line override the defaults they are applied to (the deployment's `generation:` section,
// else SamplingParams' built-in values), so a YAML default and a flag mean the same thing.
class SamplingFlags {
 public:
  // Registers the flags on `app`.
  void add_to(CLI::App& app);
  // `base` with the given flags applied, validated (Error naming the flag).
  SamplingParams over(const SamplingParams& base) const;

 private:
  SamplingParams values_;
  std::vector<std::string> stop_;
  std::vector<std::pair<CLI::Option*, std::function<void(SamplingParams&)>>> flags_;
};

}  // namespace glmpipe
