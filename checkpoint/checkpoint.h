// Checkpoint: an unmodified Hugging Face ChatGLM directory, opened lazily.
//
//   Checkpoint ckpt = Checkpoint::open("/models/chatglm-6b");   // reads config.json + index/headers
//   for (const TensorInfo& t : ckpt.tensors()) ...               // no tensor bytes read
//   at::Tensor w = ckpt.load("transformer.layers.3.mlp.dense_h_to_4h.weight",
//                            at::kFloat, at::kCPU);               // reads exactly this tensor
//
// Supported layouts: pytorch_model.bin.index.json, model.safetensors.index.json, a single
// pytorch_model.bin or model.safetensors. `.bin` files are torch.save zip archives read with our own
// zip + pickle reader (libtorch 1.13's unpickler rejects OrderedDict); both formats are mmapped and
// a loaded tensor's source pages are released after conversion, so peak RSS stays near the bytes
// actually kept plus one tensor.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/model_config.h"

namespace glmpipe {

struct TensorInfo {
  std::string name;            // checkpoint key, e.g. "transformer.layers.0.attention.dense.weight"
  at::ScalarType dtype;        // dtype on disk
  std::vector<int64_t> shape;
  int64_t nbytes = 0;          // bytes on disk (numel * element size)
  std::string file;            // shard file name relative to the directory
};

class Checkpoint {
 public:
  // Opens DIR: config.json + the index (or the single weights file). Errors name the file.
  static Checkpoint open(const std::string& dir);

  const std::string& dir() const;
  const ModelConfig& config() const;
  // Every tensor in the checkpoint, sorted by name, metadata only.
  const std::vector<TensorInfo>& tensors() const;
  bool has(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // Error if absent

  // Loads one tensor converted to `dtype` on `device` (a fresh, owned, contiguous tensor).
  at::Tensor load(const std::string& name, at::ScalarType dtype, at::Device device = at::kCPU) const;
  // Zero-copy view of the tensor's bytes in the memory-mapped file, in its on-disk dtype
  // (the disk tier: pages are read on use and can be dropped by the kernel). Stays valid while
  // this Checkpoint (or a copy of it) lives.
  at::Tensor map(const std::string& name) const;
  // map() with every page of the tensor mapped now (read from disk if not cached): a resident,
  // zero-copy view in the stored dtype (the int weights of a pre-quantized checkpoint, used as
  // stored). Read-only memory, never written; the kernel may drop its pages under memory pressure
  // and read them back on use (they are clean file pages, as chatglm.cpp's mmapped weights).
  at::Tensor map_resident(const std::string& name) const;
  // Rows [row, row + n) (dim 0) converted to `dtype` on the CPU, their source pages released: a large
  // tensor processed slice by slice (quantize-at-load) never holds the whole source.
  at::Tensor load_rows(const std::string& name, int64_t row, int64_t n, at::ScalarType dtype) const;
  // Drops this process's pages of the tensor's bytes (MADV_DONTNEED; the page cache keeps them and
  // the next access to a map() view faults them back in): the disk tier calls it after each use.
  void release(const std::string& name) const;
  // The same for rows [row, row + n) (dim 0) of a contiguous tensor (others: nothing is dropped).
  void release_rows(const std::string& name, int64_t row, int64_t n) const;

  Checkpoint(Checkpoint&&) noexcept;
  Checkpoint& operator=(Checkpoint&&) noexcept;
  Checkpoint(const Checkpoint&);
  ~Checkpoint();

  struct Impl;

 private:
  explicit Checkpoint(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// --- writing (make-tiny-model, tests) ---

enum class CheckpointFormat { kBin, kSafetensors };

struct WriteOptions {
  CheckpointFormat format = CheckpointFormat::kSafetensors;
  int shards = 1;  // >1 writes *-0000k-of-0000N files + the index json
};

// Writes `tensors` (name -> tensor, any dtype, CPU) plus config.json into DIR in HF layout.
// `.bin` shards are ordinary torch.save zip files that Python's torch.load reads.
void write_checkpoint(const std::string& dir, const ModelConfig& cfg,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const WriteOptions& opts);

}  // namespace glmpipe
