// The subset of Python's pickle that torch.save uses for a state dict (protocol 2; the few
// protocol-4 framing opcodes are accepted too). Reading builds only metadata: storages are
// persistent ids ('storage', torch.XStorage, key, location, numel) that name zip records, so no
// tensor byte is touched. Only these callables are allowed (anything else is an Error naming it):
//   collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter,
//   torch._utils._rebuild_parameter_with_state, torch.<Type>Storage.
// reference: CPython Lib/pickletools.py (opcode table), torch/serialization.py (persistent ids).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace glmpipe {

struct PickledTensor {
  std::string name;          // state-dict key
  std::string storage_key;   // zip record <stem>/data/<storage_key>
  at::ScalarType dtype = at::kFloat;
  int64_t storage_numel = 0; // elements in the storage
  int64_t storage_offset = 0;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;
};

// Limits of the unpickler (a crafted data.pkl must not take unbounded memory or time; a real state
// dict is ~20 objects and ~100 bytes per tensor, nested ~6 deep). Exceeding one is an Error naming
// the file and the limit.
constexpr uint64_t kPickleMaxBytes = uint64_t{64} << 20;  // size of data.pkl
constexpr uint64_t kPickleMaxObjects = uint64_t{1} << 21; // values created (and memo entries)
constexpr uint32_t kPickleMaxDepth = 64;                  // container nesting and open MARKs
constexpr uint64_t kPickleMaxKeyBytes = 4096;             // a state-dict key or storage key

// Parses data.pkl of a torch.save'd dict / OrderedDict of tensors. `where` (the file) is used in
// error messages.
std::vector<PickledTensor> unpickle_state_dict(const uint8_t* data, size_t size, const std::string& where);

// Protocol-2 pickle of collections.OrderedDict{name: _rebuild_tensor_v2(storage, ...)}, as torch.save
// writes it (one storage per tensor is the caller's choice; views are expressed by offset/strides).
std::string pickle_state_dict(const std::vector<PickledTensor>& tensors);

}  // namespace glmpipe
