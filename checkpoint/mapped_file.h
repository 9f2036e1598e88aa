// Internal to checkpoint/: a read-only memory-mapped weights file, where a tensor lives in it, and
// the dtype names used by safetensors headers and torch.save storages.
//
// A MappedFile is held by shared_ptr: Checkpoint maps each shard once (on first use) and every
// zero-copy view from Checkpoint::map() keeps the mapping alive through its deleter.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"

namespace glmpipe {

class MappedFile {
 public:
  // Maps the whole file read-only (MAP_PRIVATE). Error naming the file if it cannot be opened.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops the pages covering [offset, offset + len) from this process (MADV_DONTNEED): they are
  // file-backed and unmodified, so a later access just faults them in again.
  void release(uint64_t offset, uint64_t len) const;

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

// Where one tensor's bytes are inside its file. Offsets are bytes from the start of the file.
struct TensorLocation {
  TensorInfo info;               // name, on-disk dtype, shape, nbytes, file
  std::vector<int64_t> strides;  // in elements (views saved by torch.save keep their strides)
  uint64_t data_offset = 0;      // element [0, 0, ...] (storage start + storage_offset * itemsize)
  uint64_t span_begin = 0;       // byte range of the file the tensor touches (bounds, madvise)
  uint64_t span_end = 0;
};

// Strides of a contiguous tensor of `shape`.
std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape);
int64_t numel_of(const std::vector<int64_t>& shape);
std::string shape_str(const std::vector<int64_t>& shape);

// safetensors dtype strings: F32 F16 BF16 F64 I8 U8 I16 I32 I64 BOOL. Unknown -> false.
bool dtype_from_safetensors(const std::string& s, at::ScalarType* out);
std::string dtype_to_safetensors(at::ScalarType t);  // Error for unsupported types
// torch.save storage class names: FloatStorage, HalfStorage, BFloat16Storage, ...
bool dtype_from_storage_name(const std::string& s, at::ScalarType* out);
std::string dtype_to_storage_name(at::ScalarType t);  // Error for unsupported types

// A file written under a temporary name next to `path` and renamed into place by commit(); if
// commit() is never reached (an exception), the destructor removes the temporary file.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t n);
  void write(const std::string& s) { write(s.data(), s.size()); }
  uint64_t offset() const { return offset_; }
  const std::string& path() const { return path_; }
  void commit();

 private:
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
  uint64_t offset_ = 0;
};

void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace glmpipe
