// Fuzz harnesses (see fuzz_targets.h).
#include "tests/fuzz/fuzz_targets.h"

#include <cstring>
#include <string>

#include "checkpoint/mapped_file.h"
#include "checkpoint/pickle.h"
#include "checkpoint/safetensors.h"
#include "checkpoint/torch_zip.h"
#include "comm/wire_header.h"
#include "common/error.h"
#include "planner/deployment.h"

namespace glmpipe::fuzz {
namespace {

// Reads the first and last byte of every located tensor: a view outside the input is an ASan report.
volatile uint8_t g_sink;
void touch(const MappedFile& f, const std::vector<TensorLocation>& locs) {
  for (const auto& l : locs) {
    if (l.span_end <= l.span_begin) continue;
    g_sink = f.data()[l.span_begin];
    g_sink = f.data()[l.span_end - 1];
    TensorLocation copy = l;
    check_tensor_in_file(&copy, f.size(), f.path());  // what Checkpoint::map() does before a view
  }
}

template <typename Fn>
bool accepted(Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

bool pickle(const uint8_t* data, size_t size) {
  return accepted([&] {
    std::vector<PickledTensor> ts = unpickle_state_dict(data, size, "fuzz/data.pkl");
    for (const auto& t : ts) g_sink = static_cast<uint8_t>(t.name.size() + t.shape.size());
  });
}

bool torch_zip(const uint8_t* data, size_t size) {
  auto f = MappedFile::wrap(data, size, "fuzz/pytorch_model.bin");
  return accepted([&] { touch(*f, read_torch_zip_index(*f, "pytorch_model.bin")); });
}

bool safetensors(const uint8_t* data, size_t size) {
  auto f = MappedFile::wrap(data, size, "fuzz/model.safetensors");
  return accepted([&] { touch(*f, read_safetensors_index(*f, "model.safetensors")); });
}

// 88 header bytes, then optional bytes choosing what the receiver expects: [tag, dtype, ndim,
// shape[0..5] as int8 (-1 = wildcard)].
bool wire_header(const uint8_t* data, size_t size) {
  ActivationHeader h;
  std::memcpy(&h, data, std::min(size, sizeof h));
  Expectation want;
  const uint8_t* x = data + std::min(size, sizeof h);
  size_t left = size - std::min(size, sizeof h);
  if (left >= 1 && x[0] < kNumTags) want.tag = static_cast<Tag>(x[0]);
  if (left >= 2 && x[1] >= 1 && x[1] <= 6) want.dtype = static_cast<DType>(x[1]);
  if (left >= 3 && x[2] <= kMaxDims) want.ndim = x[2];
  for (size_t i = 3; i < left && i < 3 + kMaxDims; ++i) want.shape.push_back(static_cast<int8_t>(x[i]));
  if (want.ndim && !want.shape.empty()) want.shape.resize(static_cast<size_t>(*want.ndim));
  return accepted([&] {
    validate(h, want, 1, 0);
    g_sink = static_cast<uint8_t>(to_string(h).size() + header_shape(h).size());
  });
}

bool deployment_yaml(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  return accepted([&] {
    Deployment d = parse_deployment(text, "fuzz.yaml");
    g_sink = static_cast<uint8_t>(d.ranks.size());
  });
}

const std::vector<Target>& targets() {
  static const std::vector<Target> kTargets = {
      {"pickle", pickle},           {"torch_zip", torch_zip},           {"safetensors", safetensors},
      {"wire_header", wire_header}, {"deployment_yaml", deployment_yaml}, {"chat_request", chat_request},
  };
  return kTargets;
}

}  // namespace glmpipe::fuzz
