// The wire format of one pipeline message: a fixed-size ActivationHeader, then the raw payload
// bytes (row-major, contiguous, host byte order; all ranks of a job run on the same architecture).
//
//   0      4     6     8        16        24      28     32                  80       88
//   |magic |ver  |tag  | step   | seq_id  | dtype | ndim | shape[6] (int64)  | nbytes |
//
// The receiver trusts nothing in it: validate() checks magic/version, bounds (ndim <= 6, non-negative
// dims, nbytes == numel * element size, nbytes <= cap) and what the receiver expects (tag, dtype,
// shape with -1 wildcards, seq_id, step), throwing glmpipe::Error that names both ranks and the field.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace glmpipe {

// Logical message kinds. Each maps to its own pair of MPI tags (header, payload).
enum class Tag : uint16_t {
  kActivations = 0,  // hidden states stage s -> s+1: [tokens, hidden]
  kTokens = 1,       // last stage -> first stage: sampled ids + stop flags
  kControl = 2,      // new request, cancel, shutdown
  kProbe = 3,        // liveness / benchmarks / tests
  kStartup = 4,      // start-up reports (load progress, memory, load time) to rank 0
  kParams = 5,       // first stage -> last stage: a new sequence's sampling parameters
};
constexpr int kNumTags = 6;
const char* tag_name(Tag tag);

// Our own dtype codes (stable on the wire, unlike at::ScalarType's numbering).
enum class DType : int32_t { kF32 = 1, kF16 = 2, kBF16 = 3, kI32 = 4, kI64 = 5, kU8 = 6 };
const char* dtype_name(DType dtype);
int64_t dtype_size(DType dtype);
DType to_dtype(at::ScalarType t);  // throws for unsupported types
at::ScalarType to_scalar_type(DType d);
// Name of a raw wire code, "code 42" when unknown (for messages about corrupt headers).
std::string dtype_code_name(int32_t code);

constexpr uint32_t kWireMagic = 0x504D4C47;  // bytes 'G','L','M','P' in memory (little endian)
constexpr uint16_t kWireVersion = 1;
constexpr int kMaxDims = 6;
constexpr int64_t kMaxPayloadBytes = int64_t(1) << 30;  // 1 GiB default cap

#pragma pack(push, 1)
struct ActivationHeader {
  uint32_t magic = kWireMagic;
  uint16_t version = kWireVersion;
  uint16_t tag = 0;        // Tag
  int64_t step = 0;        // decode step (or -1)
  int64_t seq_id = 0;      // micro-batch / sequence id: receivers match on (peer, tag, seq_id)
  int32_t dtype = 0;       // DType
  int32_t ndim = 0;        // 0..kMaxDims
  int64_t shape[kMaxDims] = {0, 0, 0, 0, 0, 0};  // unused dims are 0
  int64_t nbytes = 0;      // payload size; == numel * dtype_size
};
#pragma pack(pop)
static_assert(sizeof(ActivationHeader) == 88, "ActivationHeader is part of the wire format");

// What the receiver expects. Every field is optional; shape entries of -1 are wildcards, and a
// non-empty shape also fixes ndim.
struct Expectation {
  std::optional<Tag> tag;
  std::optional<DType> dtype;
  std::optional<int> ndim;
  std::vector<int64_t> shape;
  std::optional<int64_t> seq_id;
  std::optional<int64_t> step;
  int64_t max_bytes = kMaxPayloadBytes;
};

// Builds the header describing `t` (which must be contiguous; any device).
ActivationHeader make_header(Tag tag, int64_t step, int64_t seq_id, const at::Tensor& t);
// Same from raw parts (device buffers without an at::Tensor, e.g. the NCCL path).
ActivationHeader make_header(Tag tag, int64_t step, int64_t seq_id, DType dtype,
                             const std::vector<int64_t>& shape);

// Throws glmpipe::Error "rank <me> received from rank <peer>: <field> ..., expected ..." on the first
// problem; checks integrity (magic, version, tag/dtype codes, ndim, dims, nbytes) before `want`.
void validate(const ActivationHeader& got, const Expectation& want, int my_rank, int peer_rank);

std::vector<int64_t> header_shape(const ActivationHeader& h);
std::string shape_string(const std::vector<int64_t>& shape);
std::string to_string(const ActivationHeader& h);  // one line, for logs and errors

}  // namespace glmpipe
