// Chunked prefill (stage/scheduler.h): a long prompt of a causal family goes out as micro-batches of
// at most prefill_chunk rows, all but the last flagged kFlagPrefillPart; the sequence stays ready
// between chunks (the next may follow at once), the last chunk waits for its token; the last stage
// samples nothing for a chunk that is not the last but keeps its ids in the sampler's history.
// v1 (bidirectional context) and forward mode are never chunked. In-process: no model, no MPI.
#include <gtest/gtest.h>

#include <vector>

#include "model/tiny_model.h"
#include "stage/scheduler.h"
#include "stage/token_selector.h"

using namespace glmpipe;

namespace {

ModelConfig glm4_config() {
  TinyModelOptions o;
  o.family = TinyFamily::kGLM4;
  return tiny_model_config(o);
}

std::vector<int64_t> prompt(int n) {
  std::vector<int64_t> p;
  for (int i = 0; i < n; ++i) p.push_back(10 + i);
  return p;
}

// A kTokens reply of one row: token -1 and not finished acknowledges a prompt chunk.
at::Tensor reply(int64_t seq, int64_t token, bool finished) {
  auto t = at::zeros({1, kTokenFields}, at::kLong);
  t[0][kTokSeqId] = seq;
  t[0][kTokToken] = token;
  t[0][kTokFinished] = finished ? 1 : 0;
  return t;
}

TEST(PrefillChunk, LongPromptGoesOutInChunksAndWaitsOnlyForTheLast) {
  std::vector<TokenEvent> events;
  Scheduler s(glm4_config(), 1, 64, 4, [&](const TokenEvent& e) { events.push_back(e); }, 3);
  Request r;
  r.id = "a";
  r.input_ids = prompt(8);
  r.params.max_new_tokens = 4;
  const int64_t seq = s.submit(r);
  std::vector<SeqMeta> meta;
  std::vector<int64_t> ids;
  const std::vector<int64_t> lens = {3, 3, 2};
  int64_t past = 0;
  for (size_t k = 0; k < lens.size(); ++k) {
    ASSERT_TRUE(s.next_micro_batch(meta, ids)) << "chunk " << k;
    ASSERT_EQ(meta.size(), 1u);
    EXPECT_EQ(meta[0].chunk.past, past);
    EXPECT_EQ(meta[0].chunk.len, lens[k]);
    EXPECT_EQ(ids, std::vector<int64_t>(r.input_ids.begin() + past, r.input_ids.begin() + past + lens[k]));
    EXPECT_EQ((meta[0].flags & kFlagPrefillPart) != 0, k + 1 < lens.size()) << "chunk " << k;
    EXPECT_EQ((meta[0].flags & kFlagNewSequence) != 0, k == 0) << "chunk " << k;
    past += lens[k];
  }
  EXPECT_EQ(s.in_flight(), 3);
  EXPECT_FALSE(s.next_micro_batch(meta, ids));  // the last chunk is in flight: nothing ready
  s.on_tokens(reply(seq, -1, false));            // the two chunk acknowledgements
  s.on_tokens(reply(seq, -1, false));
  EXPECT_FALSE(s.next_micro_batch(meta, ids));   // still waiting for the token
  EXPECT_TRUE(events.empty());                   // a chunk's acknowledgement is no token event
  s.on_tokens(reply(seq, 42, false));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].token, 42);
  ASSERT_TRUE(s.next_micro_batch(meta, ids));
  EXPECT_EQ(meta[0].chunk.past, 8);
  EXPECT_EQ(meta[0].chunk.len, 1);
  EXPECT_EQ(ids, std::vector<int64_t>{42});
  EXPECT_EQ(meta[0].flags & (kFlagPrefillPart | kFlagNewSequence), 0);
}

TEST(PrefillChunk, NotForV1NorForwardModeNorWhenOff) {
  struct Case {
    ModelConfig cfg;
    int64_t chunk;
    bool all_logits;
  };
  const ModelConfig v1 = tiny_model_config(TinyModelOptions{});
  for (const Case& c : {Case{v1, 3, false}, Case{glm4_config(), 3, true}, Case{glm4_config(), 0, false},
                        Case{glm4_config(), 8, false}}) {
    Scheduler s(c.cfg, 1, 64, 4, [](const TokenEvent&) {}, c.chunk);
    Request r;
    r.input_ids = prompt(8);
    r.all_logits = c.all_logits;
    s.submit(r);
    std::vector<SeqMeta> meta;
    std::vector<int64_t> ids;
    ASSERT_TRUE(s.next_micro_batch(meta, ids));
    EXPECT_EQ(meta[0].chunk.len, 8) << "chunk " << c.chunk << " all_logits " << c.all_logits;
    EXPECT_EQ(meta[0].flags & kFlagPrefillPart, 0);
  }
}

// The last stage: a chunk that is not the last gets no logits row and samples nothing; the final
// chunk samples with the whole prompt in the history (repetition penalty sees every prompt id).
TEST(PrefillChunk, LastStageSamplesOnlyAfterTheLastChunk) {
  TokenSelector sel;
  const int64_t vocab = 20;
  SeqMeta first;
  first.seq_id = 7;
  first.chunk = SeqChunk{0, 0, 3, 0, 0};
  first.flags = kFlagNewSequence | kFlagPrefillPart;
  first.params.greedy = true;
  first.params.repetition_penalty = 1e6;  // a seen id can never win
  first.params.max_length = 64;
  auto out = sel.select({first}, at::tensor(std::vector<int64_t>{5, 6, 7}, at::kLong), at::Tensor());
  EXPECT_EQ(out[0][kTokToken].item<int64_t>(), -1);
  EXPECT_EQ(out[0][kTokFinished].item<int64_t>(), 0);
  EXPECT_EQ(sel.live_sequences(), 1u);
  SeqMeta last = first;
  last.chunk = SeqChunk{0, 3, 2, 0, 0};
  last.flags = 0;
  // logits favour 5 (first chunk), then 8 (this chunk), then 2: the penalty must see both chunks
  auto logits = at::zeros({1, vocab});
  logits[0][5] = 3.0;
  logits[0][8] = 2.0;
  logits[0][2] = 1.0;
  out = sel.select({last}, at::tensor(std::vector<int64_t>{8, 9}, at::kLong), logits);
  EXPECT_EQ(out[0][kTokToken].item<int64_t>(), 2);
}

}  // namespace
