#include "model/kv_cache.h"

#include "common/error.h"

namespace glmpipe {

KVCache::KVCache(int64_t layer_begin, int64_t layer_end, int64_t slots, int64_t max_seq, int64_t heads,
                 int64_t head_dim, at::ScalarType dtype, at::Device device)
    : layer_begin_(layer_begin), layer_end_(layer_end), slots_(slots), max_seq_(max_seq) {
  GLMPIPE_CHECK(layer_end >= layer_begin && slots > 0 && max_seq > 0)
      << "KV cache: bad geometry layers [" << layer_begin << ", " << layer_end << "), slots " << slots
      << ", max_seq " << max_seq;
  auto opts = at::TensorOptions().dtype(dtype).device(device);
  try {
    for (int64_t l = layer_begin; l < layer_end; ++l) {
      // zeros, not empty: untouched positions are never read, but zeros keep dumps readable.
      k_.push_back(at::zeros({slots, heads, max_seq, head_dim}, opts));
      v_.push_back(at::zeros({slots, heads, max_seq, head_dim}, opts));
    }
  } catch (const c10::Error& e) {  // out of memory: one line naming the keys, not libtorch's backtrace
    GLMPIPE_FAIL() << "KV cache of layers [" << layer_begin << ", " << layer_end << ") x " << slots << " slots x "
                   << max_seq << " tokens cannot be allocated on " << device
                   << " (lower kv_cache.max_batch / kv_cache.max_seq_len or max_memory): " << e.what_without_backtrace();
  }
}

int64_t KVCache::index(int64_t layer) const {
  GLMPIPE_CHECK(layer >= layer_begin_ && layer < layer_end_)
      << "KV cache holds layers [" << layer_begin_ << ", " << layer_end_ << "), asked for layer " << layer;
  return layer - layer_begin_;
}

at::Tensor& KVCache::k(int64_t layer) { return k_[index(layer)]; }
at::Tensor& KVCache::v(int64_t layer) { return v_[index(layer)]; }

int64_t KVCache::bytes() const {
  int64_t n = 0;
  for (const auto& t : k_) n += t.nbytes();
  for (const auto& t : v_) n += t.nbytes();
  return n;
}

}  // namespace glmpipe
