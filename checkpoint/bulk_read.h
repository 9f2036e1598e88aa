// Internal to checkpoint/: what makes a load fast at 6B size (a pre-quantized int4 ChatGLM-6B is
// ~4.7 GiB of tensors): destination buffers advised to transparent huge pages (one fault per 2 MiB
// instead of per 4 KiB: 1.2 M minor faults and ~3 s of system time at 4 KiB), and tensors stored in
// the dtype they are loaded in read straight into that buffer with pread, in parallel chunks.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "checkpoint/mapped_file.h"

namespace glmpipe {

// at::empty(shape, dtype) on the CPU whose whole 2 MiB-aligned interior is advised MADV_HUGEPAGE
// (only for buffers of >= 4 MiB; smaller ones, and kernels without THP, are plain at::empty).
at::Tensor empty_huge(const std::vector<int64_t>& shape, at::ScalarType dtype);

// file.read(offset, len, dst) split into 8 MiB chunks across the intra-op threads (pread is
// thread-safe; on a cold page cache the readers keep several requests in flight).
void parallel_read(const MappedFile& file, uint64_t offset, uint64_t len, void* dst);

}  // namespace glmpipe
