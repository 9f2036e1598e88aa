// empty_huge (madvise MADV_HUGEPAGE) and parallel_read (pread in chunks across threads).
#include "checkpoint/bulk_read.h"

#include <ATen/Parallel.h>
#include <sys/mman.h>

#include <algorithm>

namespace glmpipe {

at::Tensor empty_huge(const std::vector<int64_t>& shape, at::ScalarType dtype) {
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const auto begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t end = begin + t.nbytes();
  const uintptr_t lo = (begin + kHuge - 1) & ~(kHuge - 1), hi = end & ~(kHuge - 1);
  // Advice only: an allocator chunk shares no huge page with another allocation's data here (the
  // advised range lies inside this tensor's bytes); where THP is off the call fails harmlessly.
  if (t.nbytes() >= 2 * kHuge && hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
  return t;
}

void parallel_read(const MappedFile& file, uint64_t offset, uint64_t len, void* dst) {
  constexpr uint64_t kChunk = uint64_t{8} << 20;
  const int64_t chunks = static_cast<int64_t>((len + kChunk - 1) / kChunk);
  auto* out = static_cast<uint8_t*>(dst);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const uint64_t at = static_cast<uint64_t>(c) * kChunk;
      file.read(offset + at, std::min(kChunk, len - at), out + at);
    }
  });
}

}  // namespace glmpipe
