// Single-process generation engine on random tiny models: cached decoding vs recomputation,
// ragged batches vs each sequence alone, continuous batching, bf16 vs fp32.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <map>

#include "checkpoint/tiny_model.h"
#include "stage/stage_runner.h"
#include "tests/test_util.h"

using namespace glmpipe;

namespace {

class Engine : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    at::set_num_threads(1);
    dir_ = test::make_temp_dir("engine_model");
    TinyModelOptions o;
    o.layers = 6;
    o.hidden = 64;
    o.heads = 4;
    o.vocab = 300;
    o.seed = 7;
    cfg_ = make_tiny_model(dir_, o);
  }
  static std::unique_ptr<ChatGLMShard> load(at::ScalarType dtype) {
    auto ckpt = Checkpoint::open(dir_);
    ModelOptions mo;
    mo.dtype = dtype;
    auto shard = std::make_unique<ChatGLMShard>(ckpt.config(), ShardSpec::whole(ckpt.config()), mo);
    shard->load(ckpt);
    return shard;
  }
  // Logits of every row for each request (teacher forcing), all submitted together.
  static std::vector<at::Tensor> forward(ChatGLMShard& shard, const std::vector<Request>& reqs, int64_t slots) {
    std::map<int64_t, std::vector<at::Tensor>> rows;
    RunnerOptions ro;
    ro.slots = slots;
    ro.max_seq = 64;
    StageRunner runner(RankContext::single(), shard, nullptr, ro);
    runner.set_logits_callback([&](int64_t id, const at::Tensor& l) { rows[id].push_back(l.clone()); });
    std::vector<int64_t> ids;
    for (auto r : reqs) {
      r.all_logits = true;
      ids.push_back(runner.scheduler().submit(r));
    }
    runner.scheduler().request_shutdown();
    runner.run();
    std::vector<at::Tensor> out;
    for (auto id : ids) out.push_back(at::cat(rows[id], 0));
    return out;
  }
  static std::vector<std::vector<int64_t>> generate(ChatGLMShard& shard, const std::vector<Request>& reqs,
                                                    int64_t slots, int micro_batches) {
    std::map<int64_t, std::vector<int64_t>> toks;
    RunnerOptions ro;
    ro.slots = slots;
    ro.max_seq = 64;
    ro.micro_batches = micro_batches;
    StageRunner runner(RankContext::single(), shard, nullptr, ro, [&](const TokenEvent& ev) {
      ASSERT_NE(ev.finish_reason, "error") << ev.error;
      if (ev.token >= 0) toks[ev.seq_id].push_back(ev.token);
    });
    std::vector<int64_t> ids;
    for (const auto& r : reqs) ids.push_back(runner.scheduler().submit(r));
    runner.scheduler().request_shutdown();
    runner.run();
    std::vector<std::vector<int64_t>> out;
    for (auto id : ids) out.push_back(toks[id]);
    return out;
  }
  Request prompt(std::vector<int64_t> text, int64_t max_new = 6) const {
    Request r;
    r.input_ids = std::move(text);
    r.input_ids.push_back(cfg_.gmask_token_id);
    r.input_ids.push_back(cfg_.bos_token_id);
    r.params.greedy = true;
    r.params.max_new_tokens = max_new;
    return r;
  }

  static inline std::string dir_;
  static inline ModelConfig cfg_;
};

TEST_F(Engine, CachedDecodeEqualsRecompute) {
  auto shard = load(at::kFloat);
  Request base = prompt({11, 42, 7, 150});
  std::vector<int64_t> tail = {33, 201, 5, 77};
  Request full = base;  // the whole sequence in one call
  full.input_ids.insert(full.input_ids.end(), tail.begin(), tail.end());
  Request cached = base;  // prompt in one call, then one token at a time through the KV cache
  cached.forced = tail;
  auto a = forward(*shard, {full}, 1)[0];
  auto b = forward(*shard, {cached}, 1)[0];
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_LE((a - b).abs().max().item<float>(), 1e-5 * std::max(1.0f, a.abs().max().item<float>()));
}

TEST_F(Engine, RaggedBatchEqualsEachSequenceAlone) {
  auto shard = load(at::kFloat);
  std::vector<Request> reqs = {prompt({3, 4, 5, 6, 7, 8, 9}), prompt({20}), prompt({100, 101, 102})};
  reqs[1].forced = {17, 18};
  auto together = forward(*shard, reqs, 3);
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto alone = forward(*shard, {reqs[i]}, 1)[0];
    ASSERT_EQ(alone.sizes(), together[i].sizes());
    EXPECT_LE((alone - together[i]).abs().max().item<float>(), 1e-5 * std::max(1.0f, alone.abs().max().item<float>()))
        << "sequence " << i;
  }
}

TEST_F(Engine, BatchedGreedyGenerationEqualsAlone) {
  auto shard = load(at::kFloat);
  std::vector<Request> reqs = {prompt({3, 4, 5, 6, 7, 8, 9}, 8), prompt({20}, 5), prompt({100, 101, 102}, 7),
                               prompt({250, 1, 2, 3}, 6)};
  // 2 slots for 4 requests: the last two join as the first ones finish (continuous batching).
  auto together = generate(*shard, reqs, 2, 2);
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto alone = generate(*shard, {reqs[i]}, 1, 1)[0];
    EXPECT_EQ(alone, together[i]) << "sequence " << i;
    EXPECT_FALSE(alone.empty());
    EXPECT_LE(static_cast<int64_t>(alone.size()), reqs[i].params.max_new_tokens);
  }
}

TEST_F(Engine, OverlongPromptIsRejectedNotTruncated) {
  auto shard = load(at::kFloat);
  std::vector<int64_t> long_text(70, 9);  // the KV budget is 64 tokens per sequence
  bool rejected = false;
  RunnerOptions ro;
  ro.max_seq = 64;
  StageRunner runner(RankContext::single(), *shard, nullptr, ro, [&](const TokenEvent& ev) {
    if (ev.finish_reason == "error") rejected = ev.error.find("does not fit") != std::string::npos;
  });
  runner.scheduler().submit(prompt(long_text));
  runner.scheduler().request_shutdown();
  runner.run();
  EXPECT_TRUE(rejected);
}

TEST_F(Engine, Bf16StaysCloseToFp32) {
  auto f32 = load(at::kFloat);
  auto b16 = load(at::kBFloat16);
  Request r = prompt({11, 42, 7, 150});
  r.forced = {33, 201, 5};
  auto a = forward(*f32, {r}, 1)[0];
  auto b = forward(*b16, {r}, 1)[0];
  // Stated tolerance: bf16 keeps 8 mantissa bits; through 6 blocks the logits stay within 5% of
  // the fp32 logit range, and the argmax agrees on most rows.
  const float range = a.abs().max().item<float>();
  EXPECT_LE((a - b).abs().max().item<float>(), 0.05f * range);
  auto agree = (a.argmax(1) == b.argmax(1)).sum().item<int64_t>();
  EXPECT_GE(agree, a.size(0) - 1);
}

}  // namespace
