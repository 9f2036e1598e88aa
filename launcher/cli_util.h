// Small helpers shared by subcommands: id lists, sampling flags.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "stage/sampler.h"

namespace glmpipe {

// "5,6,7" → {5, 6, 7}; Error naming `what` on anything else.
std::vector<int64_t> parse_id_list(const std::string& text, const std::string& what);
std::string join_ids(const std::vector<int64_t>& ids);

struct SamplingFlags {
  SamplingParams params;
  bool greedy = false;
};
void add_sampling_options(CLI::App& app, SamplingParams& p);

}  // namespace glmpipe
