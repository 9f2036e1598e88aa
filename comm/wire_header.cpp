#include "comm/wire_header.h"

#include <sstream>

#include "common/error.h"

namespace glmpipe {

const char* tag_name(Tag tag) {
  switch (tag) {
    case Tag::kActivations: return "activations";
    case Tag::kTokens: return "tokens";
    case Tag::kControl: return "control";
    case Tag::kProbe: return "probe";
    case Tag::kStartup: return "startup";
    case Tag::kParams: return "params";
  }
  return "unknown-tag";
}

static bool valid_dtype_code(int32_t code) { return code >= 1 && code <= 6; }

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
    case DType::kU8: return "u8";
  }
  return "unknown-dtype";
}

std::string dtype_code_name(int32_t code) {
  if (valid_dtype_code(code)) return dtype_name(static_cast<DType>(code));
  return "code " + std::to_string(code);
}

int64_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kF32: case DType::kI32: return 4;
    case DType::kF16: case DType::kBF16: return 2;
    case DType::kI64: return 8;
    case DType::kU8: return 1;
  }
  GLMPIPE_FAIL() << "dtype_size: invalid dtype code " << static_cast<int32_t>(dtype);
  return 0;
}

DType to_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return DType::kF32;
    case at::kHalf: return DType::kF16;
    case at::kBFloat16: return DType::kBF16;
    case at::kInt: return DType::kI32;
    case at::kLong: return DType::kI64;
    case at::kByte: return DType::kU8;
    default: break;
  }
  GLMPIPE_FAIL() << "tensor dtype " << c10::toString(t)
                 << " cannot be sent (supported: f32, f16, bf16, i32, i64, u8)";
  return DType::kF32;
}

at::ScalarType to_scalar_type(DType d) {
  switch (d) {
    case DType::kF32: return at::kFloat;
    case DType::kF16: return at::kHalf;
    case DType::kBF16: return at::kBFloat16;
    case DType::kI32: return at::kInt;
    case DType::kI64: return at::kLong;
    case DType::kU8: return at::kByte;
  }
  GLMPIPE_FAIL() << "invalid dtype code " << static_cast<int32_t>(d);
  return at::kFloat;
}

ActivationHeader make_header(Tag tag, int64_t step, int64_t seq_id, DType dtype,
                             const std::vector<int64_t>& shape) {
  GLMPIPE_CHECK(shape.size() <= size_t(kMaxDims))
      << "cannot send a tensor with " << shape.size() << " dims (at most " << kMaxDims << ")";
  ActivationHeader h;
  h.tag = static_cast<uint16_t>(tag);
  h.step = step;
  h.seq_id = seq_id;
  h.dtype = static_cast<int32_t>(dtype);
  h.ndim = static_cast<int32_t>(shape.size());
  int64_t numel = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    GLMPIPE_CHECK(shape[i] >= 0) << "negative dim in shape " << shape_string(shape);
    h.shape[i] = shape[i];
    numel *= shape[i];
  }
  h.nbytes = numel * dtype_size(dtype);
  return h;
}

ActivationHeader make_header(Tag tag, int64_t step, int64_t seq_id, const at::Tensor& t) {
  GLMPIPE_CHECK(t.defined()) << "cannot send an undefined tensor (tag " << tag_name(tag) << ")";
  GLMPIPE_CHECK(t.is_contiguous()) << "tensor to send must be contiguous (tag " << tag_name(tag) << ")";
  return make_header(tag, step, seq_id, to_dtype(t.scalar_type()), t.sizes().vec());
}

std::vector<int64_t> header_shape(const ActivationHeader& h) {
  int n = h.ndim < 0 ? 0 : (h.ndim > kMaxDims ? kMaxDims : h.ndim);
  return std::vector<int64_t>(h.shape, h.shape + n);
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

std::string to_string(const ActivationHeader& h) {
  std::ostringstream os;
  os << "{tag " << (h.tag < kNumTags ? tag_name(static_cast<Tag>(h.tag)) : "?") << ", step " << h.step
     << ", seq " << h.seq_id << ", " << dtype_code_name(h.dtype) << " " << shape_string(header_shape(h))
     << ", " << h.nbytes << " B}";
  return os.str();
}

void validate(const ActivationHeader& got, const Expectation& want, int my_rank, int peer_rank) {
  const std::string who =
      "rank " + std::to_string(my_rank) + " received from rank " + std::to_string(peer_rank) + ": ";
  // Integrity first: a corrupt or foreign message must not be interpreted further.
  GLMPIPE_CHECK(got.magic == kWireMagic)
      << who << "bad magic 0x" << std::hex << got.magic << ", expected 0x" << kWireMagic << std::dec
      << " ('GLMP'). HINT: the peer is not a glmpipe transport, or the message streams are out of "
         "step (a payload was read as a header)";
  GLMPIPE_CHECK(got.version == kWireVersion)
      << who << "wire version " << got.version << ", expected " << kWireVersion
      << ". HINT: all ranks must run the same glmpipe build";
  GLMPIPE_CHECK(got.tag < kNumTags) << who << "unknown tag code " << got.tag;
  GLMPIPE_CHECK(valid_dtype_code(got.dtype)) << who << "unknown dtype code " << got.dtype;
  GLMPIPE_CHECK(got.ndim >= 0 && got.ndim <= kMaxDims)
      << who << "ndim " << got.ndim << " out of range [0, " << kMaxDims << "]";
  int64_t numel = 1;
  for (int i = 0; i < got.ndim; ++i) {
    GLMPIPE_CHECK(got.shape[i] >= 0) << who << "shape dim " << i << " = " << got.shape[i] << " is out of range";
    int64_t next = 0;
    const bool overflow = __builtin_mul_overflow(numel, got.shape[i], &next);
    GLMPIPE_CHECK(!overflow && next <= want.max_bytes)
        << who << "shape " << shape_string(header_shape(got)) << " exceeds the cap of " << want.max_bytes
        << " bytes";
    numel = next;
  }
  const DType dt = static_cast<DType>(got.dtype);
  GLMPIPE_CHECK(got.nbytes == numel * dtype_size(dt))
      << who << "nbytes " << got.nbytes << " != numel " << numel << " * " << dtype_size(dt) << " ("
      << dtype_name(dt) << ")";
  GLMPIPE_CHECK(got.nbytes <= want.max_bytes)
      << who << "nbytes " << got.nbytes << " exceeds the cap of " << want.max_bytes << " bytes";

  // Then what this receiver expects.
  const Tag tag = static_cast<Tag>(got.tag);
  if (want.tag)
    GLMPIPE_CHECK(tag == *want.tag) << who << "tag " << tag_name(tag) << ", expected " << tag_name(*want.tag);
  if (want.dtype)
    GLMPIPE_CHECK(dt == *want.dtype) << who << "dtype " << dtype_name(dt) << ", expected " << dtype_name(*want.dtype);
  if (want.seq_id)
    GLMPIPE_CHECK(got.seq_id == *want.seq_id)
        << who << "seq_id " << got.seq_id << ", expected " << *want.seq_id << " (tag " << tag_name(tag) << ")";
  if (want.step)
    GLMPIPE_CHECK(got.step == *want.step) << who << "step " << got.step << ", expected " << *want.step;
  const std::vector<int64_t> shape = header_shape(got);
  int want_ndim = want.shape.empty() ? want.ndim.value_or(-1) : int(want.shape.size());
  if (want.ndim && !want.shape.empty())
    GLMPIPE_CHECK(*want.ndim == int(want.shape.size()))
        << "Expectation is inconsistent: ndim " << *want.ndim << " vs shape " << shape_string(want.shape);
  if (want_ndim >= 0)
    GLMPIPE_CHECK(got.ndim == want_ndim) << who << "ndim " << got.ndim << " (shape " << shape_string(shape)
                                         << "), expected " << want_ndim;
  for (size_t i = 0; i < want.shape.size(); ++i) {
    if (want.shape[i] < 0) continue;
    GLMPIPE_CHECK(shape[i] == want.shape[i])
        << who << "shape " << shape_string(shape) << ", expected " << shape_string(want.shape)
        << " (dim " << i << ")";
  }
}

}  // namespace glmpipe
