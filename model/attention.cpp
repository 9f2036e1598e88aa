#include "model/attention.h"

#include "model/attention_cpu.h"

namespace glmpipe {

at::Tensor grouped_attention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values, int64_t past,
                             int64_t visible_prefix, double scale, double mask_value) {
  const int64_t S = q.size(0), n = q.size(1), d = q.size(2), G = keys.size(0), T = keys.size(1);
  const int64_t r = n / G;  // query heads per KV group
  at::Tensor scores;        // [n, S, T]
  if (r == 1) {
    scores = at::matmul(q.transpose(0, 1), keys.transpose(1, 2)).to(at::kFloat) * scale;
  } else {
    auto qg = q.transpose(0, 1).reshape({G, r * S, d});  // heads g·r .. g·r+r−1 share group g
    scores = at::matmul(qg, keys.transpose(1, 2)).to(at::kFloat).view({n, S, T}) * scale;
  }
  if (S > 1) {
    auto qpos = at::arange(past, past + S, at::kLong).unsqueeze(1);
    auto kpos = at::arange(0, T, at::kLong).unsqueeze(0);
    auto blocked = (kpos > qpos).logical_and(kpos >= visible_prefix).to(scores.device());
    scores.masked_fill_(blocked, mask_value);
  }
  auto probs = at::softmax(scores, -1).to(values.scalar_type());  // [n, S, T]
  at::Tensor out;                                                 // [n, S, d]
  if (r == 1) out = at::matmul(probs, values);
  else out = at::matmul(probs.view({G, r * S, T}), values).view({n, S, d});
  return out.transpose(0, 1).reshape({S, n * d});
}

at::Tensor cached_attention(const at::Tensor& q, const at::Tensor& k_slot, const at::Tensor& v_slot, int64_t past,
                            int64_t visible_prefix, double scale, double mask_value) {
  const int64_t S = q.size(0), total = past + S;
  if (S == 1) {
    auto q1 = q.reshape({q.size(1), q.size(2)});  // [n, d]
    if (decode_attention_bf16_applies(q1, k_slot, v_slot)) return decode_attention_bf16(q1, k_slot, v_slot, total, scale);
  }
  auto keys = k_slot.narrow(1, 0, total).to(q.scalar_type());    // [G, P+S, d]
  auto values = v_slot.narrow(1, 0, total).to(q.scalar_type());  // [G, P+S, d]
  return grouped_attention(q, keys, values, past, visible_prefix, scale, mask_value);
}

}  // namespace glmpipe
