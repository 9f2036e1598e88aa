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
  // Maps the whole file read-only (MAP_PRIVATE). Error naming the file if it cannot be opened or is
  // not a regular file (a FIFO or a device is refused before open(), which would block on a FIFO).
  static std::shared_ptr<MappedFile> open(const std::string& path);
  // A non-owning view of bytes already in memory (fuzz targets, tests): `data` must outlive it.
  static std::shared_ptr<MappedFile> wrap(const uint8_t* data, uint64_t size, const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops the pages covering [offset, offset + len) from this process (MADV_DONTNEED): they are
  // file-backed and unmodified, so a later access just faults them in again.
  void release(uint64_t offset, uint64_t len) const;
  // Copies bytes [offset, offset + len) of the file into dst with pread(2) (a wrapped buffer:
  // memcpy), never touching the mapping: no page-table entries for the source, so a tensor loaded
  // as stored costs one kernel copy out of the page cache. Error naming the file if it is now
  // shorter (changed since open) or cannot be read. Thread-safe (pread has its own offset).
  void read(uint64_t offset, uint64_t len, void* dst) const;
  // Maps the pages covering [offset, offset + len) now (MADV_POPULATE_READ, reading them from disk
  // if they are not cached; where the kernel lacks it, Linux < 5.14, one read per page): a view of
  // them then never faults. With the page cache's large folios this is ~0.3 s for 5 GB, a copy
  // ~4 s. Error naming the file if the bytes cannot be read (e.g. the file was truncated).
  void populate(uint64_t offset, uint64_t len) const;

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool owned_ = true;  // munmap in the destructor
  int fd_ = -1;        // kept open for read(); -1 for a wrapped buffer
};

// Error naming `path` unless it is a regular file (checked with stat(), so a FIFO never blocks).
// `what` says what the file is for ("weights shard", "model config").
void check_regular_file(const std::string& path, const char* what);

// Where one tensor's bytes are inside its file. Offsets are bytes from the start of the file.
struct TensorLocation {
  TensorInfo info;               // name, on-disk dtype, shape, nbytes, file
  std::vector<int64_t> strides;  // in elements (views saved by torch.save keep their strides)
  uint64_t data_offset = 0;      // element [0, 0, ...] (storage start + storage_offset * itemsize)
  uint64_t span_begin = 0;       // byte range of the file the tensor touches (bounds, madvise)
  uint64_t span_end = 0;
  uint64_t record_begin = 0;     // byte range the format assigns to it (safetensors data_offsets,
  uint64_t record_end = 0;       // the zip record of its storage): the span must lie inside
};

// Limits on what a weights file may declare (far above any real checkpoint; they bound the work and
// memory a crafted header can ask for).
constexpr int kMaxTensorDims = 64;                           // at::Tensor's own limit is similar
constexpr uint64_t kMaxSafetensorsHeader = uint64_t{100} << 20;  // the safetensors library's limit

// Strides of a contiguous tensor of `shape` (saturating at INT64_MAX: such a shape's numel overflows
// too, which tensor_span() reports).
std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape);
int64_t numel_of(const std::vector<int64_t>& shape);  // saturating at INT64_MAX

// The byte range [begin, end) of the file that a strided view touches: element [0, ...] at byte
// `data_offset`, `item` bytes per element. All arithmetic is checked: false (and *why set) when a
// size or stride is negative, the ranks differ, or any product or sum overflows 64 bits. An empty
// tensor (some dim 0) touches nothing: end == begin. `nbytes` = numel * item.
struct TensorSpan {
  uint64_t begin = 0, end = 0;
  int64_t nbytes = 0;
};
bool tensor_span(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides, uint64_t item,
                 uint64_t data_offset, TensorSpan* out, std::string* why);
// Error naming `path` and the tensor unless tensor_span() succeeds for `loc` and its span lies inside
// its record, which lies inside [0, file_size); sets loc->span_*. Used by both readers at open and
// (on a copy) by Checkpoint::map() before a view exists, against the size of the mapping it uses.
void check_tensor_in_file(TensorLocation* loc, uint64_t file_size, const std::string& path);
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
