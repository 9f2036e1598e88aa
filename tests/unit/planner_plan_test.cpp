// make_plan on ChatGLM-6B shapes: byte totals computed by hand from chatglm-spec §1.3, the T4 + CPU
// split, strategies, the explicit map's validation errors, the disk tier and infeasible reports.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "common/error.h"
#include "planner/deployment.h"
#include "planner/model_metadata.h"
#include "planner/plan.h"

namespace glmpipe {
namespace {

// ChatGLM-6B by hand (spec §1.3): V = 130528, H = 4096, I = 16384, 28 blocks, 32 heads.
constexpr int64_t V = 130528, H = 4096, I = 16384, L = 28, kHeads = 32;
constexpr int64_t kEmbParams = V * H;
constexpr int64_t kBlockParams = (3 * H * H + 3 * H)  // query_key_value
                                 + (H * H + H)         // attention.dense
                                 + (I * H + I)         // dense_h_to_4h
                                 + (H * I + H)         // dense_4h_to_h
                                 + 4 * H;              // two LayerNorms (weight + bias)
constexpr int64_t kFinalNormParams = 2 * H;

ModelMetadata glm6b(const std::string& dtype = "float16", const std::string& q = "") {
  return synthesize_metadata(ModelConfig{}, dtype, q);
}

Deployment t4_deployment() {
  Deployment d;
  d.source_file = "t4.yaml";
  d.model.dtype = "float16";
  d.ranks = {RankSpec{"cuda:0", 15'000'000'000}, RankSpec{"cpu", 24 * kGiB}};
  d.kv_cache = {1, 2048};
  return d;
}

std::string error_of(const ModelMetadata& m, const Deployment& d) {
  try {
    make_plan(m, d);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(PlannerMetadata, ChatGLM6BFloat16BytesMatchSpecShapes) {
  ModelMetadata m = glm6b();
  ASSERT_EQ(m.units.size(), 31u);
  EXPECT_EQ(m.units[0].name, "transformer.word_embeddings");
  EXPECT_EQ(m.units[5].name, "transformer.layers.4");
  EXPECT_EQ(m.units[29].name, "transformer.final_layernorm");
  EXPECT_EQ(m.units[30].name, "lm_head");
  EXPECT_EQ(m.embedding().weight_bytes, 1'069'285'376);  // 130528 * 4096 * 2
  EXPECT_EQ(kEmbParams * 2, 1'069'285'376);
  EXPECT_EQ(m.layer(0).weight_bytes, 402'759'680);      // 201,379,840 params * 2
  EXPECT_EQ(m.layer(27).weight_bytes, kBlockParams * 2);
  EXPECT_EQ(m.final_layernorm().weight_bytes, kFinalNormParams * 2);
  // Tied (ChatGLM-6B's config has no tie_word_embeddings: HF's default true): the head is the
  // embedding matrix, counted once where both sit and again on a head stage without it.
  EXPECT_EQ(m.lm_head().weight_bytes, kEmbParams * 2);
  EXPECT_TRUE(m.lm_head_tied);
  // 28 blocks + embedding + final norm = 12,346,572,800 bytes (11.50 GiB); the stored lm_head.weight
  // (1,069,285,376 more on disk) is never read. The real checkpoint stores LayerNorms in fp32
  // (+ 933,888... bytes on disk); converted to float16 here.
  EXPECT_EQ(m.total_weight_bytes(), 12'346'572'800);
  EXPECT_EQ(m.total_weight_bytes(), kEmbParams * 2 + L * kBlockParams * 2 + kFinalNormParams * 2);
  EXPECT_EQ(glm6b("float32").total_weight_bytes(), 2 * 12'346'572'800);
  // Untied (tie_word_embeddings false): lm_head.weight is a matrix of its own, everywhere.
  ModelConfig untied;
  untied.tie_word_embeddings = false;
  const ModelMetadata u = synthesize_metadata(untied, "float16", "");
  EXPECT_FALSE(u.lm_head_tied);
  EXPECT_EQ(u.total_weight_bytes(), 13'415'858'176);
}

TEST(PlannerMetadata, QuantizedBytesAreHalfAByteOrOneBytePerWeightPlusScales) {
  const int64_t linear_weights = 3 * H * H + H * H + I * H + H * I;
  const int64_t scale_rows = 3 * H + H + I + H;  // one scale per output row, kept in fp32
  const int64_t float_rest = 3 * H + H + I + H + 4 * H;  // biases + LayerNorms stay float16
  ModelMetadata q4 = glm6b("float16", "int4");
  EXPECT_EQ(q4.layer(3).weight_bytes, linear_weights / 2 + scale_rows * 4 + float_rest * 2);
  ModelMetadata q8 = glm6b("float16", "int8");
  EXPECT_EQ(q8.layer(3).weight_bytes, linear_weights + scale_rows * 4 + float_rest * 2);
  // Tied head (int4 checkpoints store the embedding once): the head stage needs the matrix too,
  // total counts it once.
  EXPECT_TRUE(q4.lm_head_tied);
  EXPECT_EQ(q4.lm_head().weight_bytes, kEmbParams * 2);
  EXPECT_EQ(q4.total_weight_bytes(),
            kEmbParams * 2 + L * (linear_weights / 2 + scale_rows * 4 + float_rest * 2) + kFinalNormParams * 2);
}

TEST(PlannerPlan, TiedHeadCountsOnFirstAndLastStageButOnceWhenTogether) {
  ModelMetadata q4 = glm6b("float16", "int4");
  Deployment d;
  d.ranks = {RankSpec{"cpu", 64 * kGiB}};
  Plan one = make_plan(q4, d);
  EXPECT_EQ(one.stages[0].bytes.weights, q4.total_weight_bytes());
  d.ranks = {RankSpec{"cpu", 32 * kGiB}, RankSpec{"cpu", 32 * kGiB}};
  Plan two = make_plan(q4, d);
  EXPECT_EQ(two.stages[0].bytes.weights + two.stages[1].bytes.weights,
            q4.total_weight_bytes() + kEmbParams * 2);
}

// One 15 GB T4 + CPU, 2048-token KV cache, default 1.5 GiB GPU reserve. By hand:
//   budget 15e9 - reserve 1,610,612,736 - embedding 1,069,285,376
//   - activations (2*S*H*2 + S*(3H+I)*2 + 32*S*S*4 = 687,865,856)  = 11,632,236,032 bytes for blocks,
//   each block 402,759,680 weights + 2*S*H*2 = 33,554,432 KV = 436,314,112 -> 26 blocks (26.66).
// The hand-written map often used for that card puts 21 blocks on it: that leaves ~2.2 GB more free
// than this accounting needs (it was sized by trial, with HF's eager attention and allocator slack).
TEST(PlannerPlan, T4PlusCpuPutsEmbeddingAnd26BlocksOnTheGpu) {
  const int64_t S = 2048;
  const int64_t per_block = kBlockParams * 2 + 2 * S * H * 2;
  const int64_t act = 2 * S * H * 2 + S * (3 * H + I) * 2 + kHeads * S * S * 4;
  // The cpu rank (blocks + head, fp16 weights, fp32 activations, a 2048-token prefill): its input,
  // then the attention phase (x, h, qkv, rotated q and k, q's copy, the fp32 copies of the 16-bit
  // cache, two [32, S, S] score tensors: larger than the MLP phase at this length), the GEMM
  // workspace where bf16 weights are widened to fp32 (else oneDNN's bf16 GEMM scratchpad per thread:
  // AMX tiles, a 64-column panel of the widest input I, accumulators of 2048 rows), the last
  // position's fp32 logits.
  const int threads = cpu_rank_threads(t4_deployment().ranks[1]);
  const int64_t cpu_act = S * H * 4 + S * 4 * (3 * H + 3 * H + H + H) + S * 4 * 2 * H + 2 * kHeads * S * S * 4 +
                          (cpu_gemm_is_bf16() ? threads * (5 * 1024 + 128 * I + 512 * 2048) : I * H * 4) + V * 4;
  const int64_t avail = 15'000'000'000 - 3 * kGiB / 2 - kEmbParams * 2 - act;
  const int fit = static_cast<int>(avail / per_block);
  ASSERT_EQ(fit, 26);
  for (const char* strategy : {"sequential", "auto"}) {
    Deployment d = t4_deployment();
    d.placement = strategy;
    Plan p = make_plan(glm6b(), d);
    ASSERT_EQ(p.stages.size(), 2u);
    const StagePlan& gpu = p.stages[0];
    const StagePlan& cpu = p.stages[1];
    EXPECT_TRUE(gpu.has_embedding) << strategy;
    EXPECT_EQ(gpu.layer_begin, 0);
    EXPECT_EQ(gpu.layer_end, fit) << strategy;
    EXPECT_FALSE(gpu.has_head);
    EXPECT_EQ(cpu.layer_begin, fit);
    EXPECT_EQ(cpu.layer_end, 28);
    EXPECT_TRUE(cpu.has_head);
    EXPECT_EQ(cpu.units.back(), "lm_head");
    EXPECT_EQ(cpu.units[cpu.units.size() - 2], "transformer.final_layernorm");
    EXPECT_EQ(gpu.bytes.weights, kEmbParams * 2 + fit * kBlockParams * 2);
    EXPECT_EQ(gpu.bytes.kv_cache, fit * 2 * S * H * 2);
    EXPECT_EQ(gpu.bytes.activations, act);
    EXPECT_EQ(gpu.bytes.reserve, 3 * kGiB / 2);
    EXPECT_EQ(gpu.bytes.total, gpu.bytes.weights + gpu.bytes.kv_cache + act + 3 * kGiB / 2);
    EXPECT_LE(gpu.bytes.total, 15'000'000'000);
    EXPECT_LT(15'000'000'000 - gpu.bytes.total, per_block);  // one more block would not fit
    EXPECT_EQ(cpu.bytes.activations, cpu_act);  // the cpu rank's own model (planner_memory_test)
    EXPECT_EQ(cpu.bytes.reserve, kGiB);
  }
}

TEST(PlannerPlan, BalancedOnTwoEqualCardsSplitsByBytesNotCount) {
  Deployment d;
  d.ranks = {RankSpec{"cuda:0", 15 * kGiB}, RankSpec{"cuda:1", 15 * kGiB}};
  Plan p = make_plan(glm6b(), d);
  // The head stage carries lm_head (1.07 GB) + logits, the first the embedding: symmetric, 14 + 14.
  EXPECT_EQ(p.stages[0].layer_end, 14);
  EXPECT_EQ(p.stages[1].layer_begin, 14);
  // With the embedding on rank 0 only (lm_head on cpu... no: tied int4), still contiguous, in order.
  EXPECT_EQ(p.stages[0].units.size() + p.stages[1].units.size(), 31u);
}

TEST(PlannerPlan, MixedCardsGetBytesProportionalToBudget) {
  Deployment d;
  d.ranks = {RankSpec{"cuda:0", 6 * kGiB}, RankSpec{"cuda:1", 12 * kGiB}};
  d.kv_cache = {1, 512};
  d.gpu_reserve = kGiB / 2;
  Plan p = make_plan(glm6b(), d);
  const int small = p.stages[0].num_layers(), big = p.stages[1].num_layers();
  EXPECT_EQ(small + big, 28);
  EXPECT_GT(big, small);  // count-based 14 + 14 would overflow the 6 GiB card
  const double f0 = double(p.stages[0].bytes.total) / double(6 * kGiB);
  const double f1 = double(p.stages[1].bytes.total) / double(12 * kGiB);
  // Moving one block either way makes the fuller card fuller than both are now.
  const double block = double(kBlockParams * 2 + 2 * 512 * H * 2);
  EXPECT_GE(std::max(f0 + block / double(6 * kGiB), f1 - block / double(12 * kGiB)), std::max(f0, f1));
  EXPECT_GE(std::max(f0 - block / double(6 * kGiB), f1 + block / double(12 * kGiB)), std::max(f0, f1));
  // 14 + 14 by hand: 1.07 GB + 14 * 0.40 GB = 6.7 GB > 6 GiB.
  EXPECT_GT(kEmbParams * 2 + 14 * kBlockParams * 2, 6 * kGiB);
}

TEST(PlannerPlan, BalancedLow0GivesStage0OnlyTheEmbedding) {
  Deployment d;
  d.placement = "balanced_low_0";
  d.ranks = {RankSpec{"cuda:0", 20 * kGiB}, RankSpec{"cuda:1", 20 * kGiB}, RankSpec{"cuda:2", 20 * kGiB}};
  Plan p = make_plan(glm6b(), d);
  EXPECT_TRUE(p.stages[0].has_embedding);
  EXPECT_EQ(p.stages[0].num_layers(), 0);
  EXPECT_EQ(p.stages[0].units, std::vector<std::string>{"transformer.word_embeddings"});
  EXPECT_LE(std::abs(p.stages[1].num_layers() - p.stages[2].num_layers()), 3);  // head ~ 2.7 blocks
  EXPECT_EQ(p.stages[1].num_layers() + p.stages[2].num_layers(), 28);
}

// balanced_work on three equal CPU ranks, by hand: per-token work is 8 KiB for the embedding (one
// fp16 row), 402,759,680 bytes per block and 1,069,301,760 for the head (2.65 blocks), 30.65 blocks
// in all. The best split is E+0-9 | 10-19 | 20-27+H (10, 10, 10.65 blocks of work); memory
// balancing instead puts the embedding's 2.65 blocks of bytes on stage 0 and fewer blocks there.
TEST(PlannerPlan, BalancedWorkEvensBytesReadPerTokenNotResidentBytes) {
  Deployment d;
  d.kv_cache = {1, 128};
  d.ranks.assign(3, RankSpec{"cpu", 20 * kGiB});
  d.placement = "balanced_work";
  Plan w = make_plan(glm6b(), d);
  const int64_t block = kBlockParams * 2, head = (kFinalNormParams + kEmbParams) * 2;
  ASSERT_EQ(w.stages.size(), 3u);
  EXPECT_EQ(w.stages[0].layer_end, 10);
  EXPECT_EQ(w.stages[1].layer_end, 20);
  EXPECT_EQ(w.stages[0].bytes.work, H * 2 + 10 * block);
  EXPECT_EQ(w.stages[1].bytes.work, 10 * block);
  EXPECT_EQ(w.stages[2].bytes.work, 8 * block + head);
  EXPECT_EQ(w.stages[0].bytes.weights, kEmbParams * 2 + 10 * block);  // memory still counts it all
  d.placement = "balanced";
  Plan b = make_plan(glm6b(), d);
  EXPECT_LT(b.stages[0].num_layers(), w.stages[0].num_layers());
  int64_t bmax = 0;
  for (const StagePlan& s : b.stages) bmax = std::max(bmax, s.bytes.work);
  EXPECT_GT(bmax, w.stages[2].bytes.work);
  // Budgets still bind by resident bytes: a 4 GiB rank 0 cannot take 10 blocks + the embedding.
  d.placement = "balanced_work";
  d.ranks[0].max_memory = 4 * kGiB;
  Plan tight = make_plan(glm6b(), d);
  EXPECT_LT(tight.stages[0].num_layers(), 10);
  EXPECT_LE(tight.stages[0].bytes.total, 4 * kGiB);
  EXPECT_NE(tight.to_table().find("work/token"), std::string::npos);
  EXPECT_NE(tight.to_json().find("\"work\""), std::string::npos);
}

TEST(PlannerPlan, SequentialFillsEachRankInOrder) {
  Deployment d;
  d.placement = "sequential";
  d.kv_cache = {1, 128};
  d.ranks = {RankSpec{"cuda:0", 6 * kGiB}, RankSpec{"cuda:1", 6 * kGiB}, RankSpec{"cpu", 16 * kGiB}};
  Plan p = make_plan(glm6b(), d);
  for (int r = 0; r < 2; ++r) {  // full: one more unit would not fit
    const StageBytes& b = p.stages[static_cast<size_t>(r)].bytes;
    EXPECT_LT(b.headroom, kBlockParams * 2 + 2 * 128 * H * 2) << r;
  }
  EXPECT_TRUE(p.stages[2].has_head);
}

TEST(PlannerPlan, ExplicitMapAcceleratesKeyStyle) {
  Deployment d = t4_deployment();
  d.placement = "map";
  d.placement_map = {{"transformer.word_embeddings", "0"}, {"transformer.layers.0-20", "cuda:0"},
                     {"transformer.layers.21-27", "1"}, {"transformer.final_layernorm", "cpu"},
                     {"lm_head", "cpu"}};
  Plan p = make_plan(glm6b(), d);
  EXPECT_EQ(p.stages[0].layer_end, 21);
  EXPECT_EQ(p.stages[1].layer_begin, 21);
  EXPECT_TRUE(p.stages[1].has_head);
  EXPECT_EQ(p.stages[0].bytes.weights, kEmbParams * 2 + 21 * kBlockParams * 2);
}

struct MapCase {
  const char* what;
  std::vector<std::pair<std::string, std::string>> map;
  const char* expect;
};

TEST(PlannerPlan, ExplicitMapValidationErrors) {
  const std::vector<MapCase> cases = {
      {"gap", {{"transformer.word_embeddings", "0"}, {"transformer.layers.0-19", "0"},
               {"transformer.layers.21-27", "1"}, {"transformer.final_layernorm", "1"}, {"lm_head", "1"}},
       "gap: no rank for transformer.layers.20"},
      {"overlap", {{"transformer.word_embeddings", "0"}, {"transformer.layers.0-20", "0"},
                   {"transformer.layers.20-27", "1"}, {"transformer.final_layernorm", "1"}, {"lm_head", "1"}},
       "placement.transformer.layers.20-27: overlaps placement.transformer.layers.0-20"},
      {"split block", {{"transformer.word_embeddings", "0"}, {"transformer.layers.3.mlp", "0"}},
       "splits the GLMBlock transformer.layers.3"},
      {"unknown", {{"transformer.word_embedding", "0"}}, "unknown module \"transformer.word_embedding\""},
      {"device", {{"transformer.word_embeddings", "cuda:1"}}, "device \"cuda:1\" is not in the deployment"},
      {"rank", {{"transformer.word_embeddings", "2"}}, "rank 2 is not in the deployment"},
      {"no such block", {{"transformer.layers.28", "0"}}, "block 28 does not exist"},
      {"order", {{"transformer.word_embeddings", "1"}, {"transformer.layers.0-27", "0"},
                 {"transformer.final_layernorm", "1"}, {"lm_head", "1"}},
       "(stages are contiguous and in rank order)"},
      {"norm apart", {{"transformer.word_embeddings", "0"}, {"transformer.layers.0-27", "0"},
                      {"transformer.final_layernorm", "0"}, {"lm_head", "1"}},
       "transformer.final_layernorm (rank 0) must go with lm_head (rank 1)"},
      {"norm missing", {{"transformer.word_embeddings", "0"}, {"transformer.layers.0-27", "1"}, {"lm_head", "1"}},
       "transformer.final_layernorm is missing"},
      {"empty rank", {{"transformer.word_embeddings", "0"}, {"transformer.layers.0-27", "0"},
                      {"transformer.final_layernorm", "0"}, {"lm_head", "0"}},
       "ranks[1] (cpu) gets no unit"},
  };
  for (const MapCase& c : cases) {
    Deployment d = t4_deployment();
    d.placement = "map";
    d.placement_map = c.map;
    std::string err = error_of(glm6b(), d);
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.what << ": " << err;
    EXPECT_EQ(err.rfind("t4.yaml: ", 0), 0u) << c.what << ": " << err;
  }
}

TEST(PlannerPlan, InfeasibleNamesDeviceShortfallAndWhatWouldFit) {
  Deployment d;
  d.source_file = "small.yaml";
  d.ranks = {RankSpec{"cuda:0", 10 * kGiB}};
  std::string err = error_of(glm6b(), d);
  EXPECT_NE(err.find("small.yaml: no placement fits"), std::string::npos) << err;
  EXPECT_NE(err.find("rank 0 (cuda:0)"), std::string::npos) << err;
  // Short by: everything on one card: weights + 28 KV + activations + logits + reserve - 8 GiB.
  const int64_t S = 2048;
  const int64_t need = 12'346'572'800 + 28 * 2 * S * H * 2 + 2 * S * H * 2 + S * (3 * H + I) * 2 +
                       kHeads * S * S * 4 + V * 4 + 3 * kGiB / 2;
  EXPECT_NE(err.find("short by " + std::to_string(need - 10 * kGiB) + " bytes"), std::string::npos) << err;
  EXPECT_NE(err.find("model.quantization: int8"), std::string::npos) << err;
  EXPECT_NE(err.find("one more rank like ranks[0]"), std::string::npos) << err;
  EXPECT_NE(err.find("a cpu rank with the disk tier"), std::string::npos) << err;

  // KV cache too large for the cards: a shorter max_seq_len fits, and the error says which.
  Deployment kv;
  kv.ranks = {RankSpec{"cuda:0", 9 * kGiB}, RankSpec{"cuda:1", 9 * kGiB}};
  kv.kv_cache = {8, 2048};
  err = error_of(glm6b(), kv);
  size_t at = err.find("kv_cache.max_seq_len: ");
  ASSERT_NE(at, std::string::npos) << err;
  const int64_t fits = std::stoll(err.substr(at + 22));
  ASSERT_GT(fits, 0);
  ASSERT_LT(fits, 2048);
  kv.kv_cache.max_seq_len = fits;
  EXPECT_NO_THROW(make_plan(glm6b(), kv));
  kv.kv_cache.max_seq_len = fits + 1;
  EXPECT_THROW(make_plan(glm6b(), kv), Error);
}

TEST(PlannerPlan, DiskTierMmapsTheLastCpuRanksWeights) {
  Deployment d;
  d.ranks = {RankSpec{"cuda:0", 6 * kGiB}, RankSpec{"cpu", 4 * kGiB}};
  d.kv_cache = {1, 512};
  EXPECT_THROW(make_plan(glm6b(), d), Error);
  d.disk.enabled = true;
  d.disk.path = "/nvme";
  Plan p = make_plan(glm6b(), d);
  const StagePlan& cpu = p.stages[1];
  EXPECT_TRUE(cpu.disk_offload);
  EXPECT_FALSE(p.stages[0].disk_offload);
  EXPECT_EQ(cpu.bytes.weights, 0);
  EXPECT_GT(cpu.bytes.mmapped, 0);
  // The embedding on the GPU, the head (the embedding matrix again, tied) on disk.
  EXPECT_EQ(p.stages[0].bytes.weights + cpu.bytes.mmapped, 13'415'858'176);
  // The GPU still takes as much as it can: one more block would not fit.
  EXPECT_LT(p.stages[0].bytes.headroom, kBlockParams * 2 + 2 * 512 * H * 2);
}

TEST(PlannerPlan, TooManyRanksIsAnError) {
  ModelConfig tiny;
  tiny.num_layers = 1;
  tiny.hidden_size = 64;
  tiny.num_attention_heads = 4;
  tiny.inner_hidden_size = 256;
  tiny.vocab_size = 256;
  Deployment d;
  d.ranks.assign(4, RankSpec{"cpu", kGiB});
  d.cpu_reserve = 0;
  std::string err = error_of(synthesize_metadata(tiny, "float32", ""), d);
  EXPECT_NE(err.find("4 ranks but the model has only 3 placement units"), std::string::npos) << err;
  d.ranks.pop_back();
  Plan p = make_plan(synthesize_metadata(tiny, "float32", ""), d);
  EXPECT_EQ(p.stages[1].units, std::vector<std::string>{"transformer.layers.0"});
}

TEST(PlannerPlan, JsonAndTable) {
  Plan p = make_plan(glm6b(), t4_deployment());
  std::string j = p.to_json();
  EXPECT_NE(j.find("\"stages\""), std::string::npos);
  EXPECT_NE(j.find("\"kv_cache\""), std::string::npos);
  std::string t = p.to_table();
  EXPECT_NE(t.find("transformer.layers.25"), std::string::npos);
  EXPECT_NE(t.find("headroom"), std::string::npos);
}

}  // namespace
}  // namespace glmpipe
