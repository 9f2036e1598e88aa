// DiskWeights: the disk tier inside a shard. The big matrices (embedding, block Linear weights,
// head) of units the plan puts on disk are zero-copy views of mmapped files — the checkpoint's own
// pages when it stores them in the dtype the shard computes with, else a converted copy written
// once into the offload folder (checkpoint/offload_folder.h, accelerate's offload_folder) — and a
// unit's pages are dropped from the process after each use (release()): the page cache keeps them,
// the next use faults them back in, and the rank's resident memory holds one unit at a time.
// Norms, biases and scales stay resident (they are small and read whole every step anyway).
//
//   DiskWeights disk;
//   disk.open(ckpt, {{unit, name, dtype}, ...}, offload_dir);   // converts what it must, once
//   w.weight = disk.view(name);                                 // no bytes read yet
//   ... compute with unit u ...;  disk.release(u);
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"

namespace glmpipe {

class DiskWeights {
 public:
  struct Want {
    int unit = 0;            // placement unit (model/family.h numbering)
    std::string unit_name;   // e.g. "transformer.layers.3" (names the offload file)
    std::string name;        // checkpoint key
    at::ScalarType dtype;    // the dtype the shard computes with for this tensor
  };

  // Maps every wanted tensor; those stored in another dtype (or not contiguous) are converted into
  // `offload_dir` first (Error naming disk.path when it is empty or cannot be written).
  void open(const Checkpoint& ckpt, const std::vector<Want>& wants, const std::string& offload_dir);
  bool empty() const { return views_.empty(); }
  bool serves(const std::string& name) const { return views_.count(name) != 0; }
  at::Tensor view(const std::string& name) const;  // Error when `name` was not wanted
  // Releasing `unit` also releases `other`'s pages (a tied head served by the embedding on disk).
  void alias(int unit, int other) { aliases_[unit].push_back(other); }
  void release(int unit) const;
  bool holds(const at::Tensor& t) const;  // a view of a mapped file (not resident)

  int units() const { return static_cast<int>(by_unit_.size()); }
  int converted_units() const { return converted_; }
  int64_t bytes() const { return bytes_; }
  const std::string& offload_folder() const { return offload_folder_; }

 private:
  struct View {
    size_t source = 0;  // index into sources_
    at::Tensor tensor;
  };
  std::vector<Checkpoint> sources_;  // [0] the checkpoint, [1] the offload copy when any
  std::map<std::string, View> views_;
  std::map<int, std::vector<std::string>> by_unit_;
  std::map<int, std::vector<int>> aliases_;
  int converted_ = 0;
  int64_t bytes_ = 0;
  std::string offload_folder_;
};

}  // namespace glmpipe
