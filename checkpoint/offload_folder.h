// The disk tier's offload folder (accelerate's `offload_folder`): when a unit placed on disk is not
// stored in the compute dtype, it cannot be served from the checkpoint's own pages, so a converted
// copy is written once into DIR and mmapped from there.
//
//   DIR/glmpipe-<dtype>/config.json                   the source's config
//   DIR/glmpipe-<dtype>/model.safetensors.index.json  weight_map over the unit files
//   DIR/glmpipe-<dtype>/<unit>.safetensors            one file per unit (e.g. transformer.layers.3)
//   DIR/glmpipe-<dtype>/source.json                   what it was made from (checkpoint dir, shard
//                                                     sizes and mtimes); a mismatch rewrites
//
// A later start with the same source finds every unit present and writes nothing; a unit missing
// from the folder (another placement) is converted and added. Units are converted one at a time:
// the transient is one unit in the compute dtype (what the plan's disk_window counts).
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "checkpoint/checkpoint.h"

namespace glmpipe {

struct OffloadUnit {
  std::string unit;                // file stem, e.g. "transformer.layers.3"
  std::vector<std::string> names;  // checkpoint keys of the unit
};

struct OffloadResult {
  Checkpoint folder;     // the converted copy, opened (map() serves the disk tier)
  int units_written = 0; // 0 when everything was already there
};

// Errors name the folder (cannot create, cannot write).
OffloadResult open_offload_folder(const Checkpoint& src, const std::string& dir, at::ScalarType dtype,
                                  const std::vector<OffloadUnit>& units);

}  // namespace glmpipe
