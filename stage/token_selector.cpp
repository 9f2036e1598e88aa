#include "stage/token_selector.h"

#include <algorithm>

#include "common/error.h"

namespace glmpipe {

at::Tensor TokenSelector::select(const std::vector<SeqMeta>& meta, const at::Tensor& ids, const at::Tensor& last_logits) {
  auto out = at::zeros({static_cast<int64_t>(meta.size()), kTokenFields}, at::kLong);
  auto o = out.accessor<int64_t, 2>();
  auto id = ids.accessor<int64_t, 1>();
  int64_t row = 0, sampled = 0;
  for (size_t i = 0; i < meta.size(); ++i) {
    const SeqMeta& m = meta[i];
    o[i][kTokSeqId] = m.seq_id;
    o[i][kTokToken] = -1;
    if (m.flags & kFlagRelease) {
      states_.erase(m.seq_id);
      o[i][kTokFinished] = 1;
      continue;
    }
    if (m.flags & kFlagAllLogits) {
      row += m.chunk.len;
      continue;
    }
    if (m.flags & kFlagNewSequence) states_.erase(m.seq_id), states_.emplace(m.seq_id, State{Sampler(m.params), {}, 0});
    auto it = states_.find(m.seq_id);
    GLMPIPE_CHECK(it != states_.end()) << "last stage has no state for sequence " << m.seq_id;
    State& st = it->second;
    for (int64_t r = 0; r < m.chunk.len; ++r) st.history.push_back(id[row + r]);
    row += m.chunk.len;
    if (m.flags & kFlagPrefillPart) continue;  // no logits row: the prompt goes on in a later chunk
    const SampleResult res = st.sampler.sample(last_logits[sampled++].clone(), st.history);
    const int64_t tok = res.token;
    const SamplingParams& p = st.sampler.params();
    st.generated += 1;
    const int64_t total = m.chunk.past + m.chunk.len + 1;  // tokens once `tok` is appended
    const bool done = m.is_stop(tok) || (p.max_new_tokens > 0 && st.generated >= p.max_new_tokens) ||
                      total >= p.max_length;
    o[i][kTokToken] = tok;
    o[i][kTokFinished] = done;
    if (p.top_logprobs >= 0) {
      o[i][kTokHasLogprob] = 1;
      o[i][kTokLogprob] = bits_of(res.logprob);
      const int64_t n = std::min<int64_t>(static_cast<int64_t>(res.top.size()), kMaxTopLogprobs);
      o[i][kTokNumTop] = n;
      for (int64_t k = 0; k < n; ++k) {
        o[i][kTokTop + 2 * k] = res.top[k].first;
        o[i][kTokTop + 2 * k + 1] = bits_of(res.top[k].second);
      }
    }
    if (done) states_.erase(it);
  }
  return out;
}

}  // namespace glmpipe
