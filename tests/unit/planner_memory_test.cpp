// The planner's model of memory against what a shard really allocates, measured deterministically
// (no RSS: bench/bench_plan_accuracy.sh does that): for fp32, bf16, int8 and int4, ChatGLM-6B and
// ChatGLM2 shapes, one stage and a 2-stage split,
//   * weights  == the bytes of the parameters the shard holds (a tied head's copy included),
//   * kv_cache == the bytes of its KV cache,
//   * activations bound the peak of the tensor bytes allocated (counted by a CPU allocator that
//     wraps libtorch's) during a full-length prefill of that stage, from above and within 25 %.
#include <gtest/gtest.h>

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <algorithm>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "checkpoint/checkpoint.h"
#include "model/linear.h"
#include "model/model.h"
#include "model/tiny_model.h"
#include "planner/plan.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

// libtorch's CPU allocation (c10::alloc_cpu) with a count of the bytes alive and their peak. The
// context is the pointer itself (oneDNN allocates through raw_allocate, which requires it).
class CountingAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {  // libtorch 2.x: non-const, and copy_data is pure
    void* p = n ? c10::alloc_cpu(n) : nullptr;
    if (p) {
      std::lock_guard<std::mutex> lock(mu_);
      sizes_[p] = static_cast<int64_t>(n);
      live_ += static_cast<int64_t>(n);
      peak_ = std::max(peak_, live_);
    }
    return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }
  // From here on, the peak counts from what is alive now; returns that baseline.
  int64_t restart() const {
    std::lock_guard<std::mutex> lock(mu_);
    peak_ = live_;
    return live_;
  }
  int64_t peak() const {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_;
  }

 private:
  static void release(void* p);
  mutable std::mutex mu_;
  mutable std::unordered_map<void*, int64_t> sizes_;
  mutable int64_t live_ = 0, peak_ = 0;
};

CountingAllocator& counter() {
  static CountingAllocator* a = [] {
    auto* c = new CountingAllocator();
    c10::SetCPUAllocator(c, /*priority=*/100);
    return c;
  }();
  return *a;
}

void CountingAllocator::release(void* p) {
  if (!p) return;
  CountingAllocator& self = counter();
  {
    std::lock_guard<std::mutex> lock(self.mu_);
    auto it = self.sizes_.find(p);
    if (it != self.sizes_.end()) {
      self.live_ -= it->second;
      self.sizes_.erase(it);
    }
  }
  c10::free_cpu(p);
}

struct Case {
  const char* dtype;
  const char* quantization;
  TinyFamily family;
};

std::string name(const Case& c) {
  return std::string(c.dtype) + (*c.quantization ? std::string("+") + c.quantization : "") +
         (c.family == TinyFamily::kChatGLM ? " chatglm" : " chatglm2");
}

constexpr int64_t kSeq = 96;  // kv_cache.max_seq_len: the prefill below fills it

class PlannerMemory : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    counter();  // installed before any tensor of the test
    dir_ = test::make_temp_dir("planner_memory");
    TinyModelOptions o;
    o.layers = 2;
    o.hidden = 256;
    o.heads = 4;
    o.inner = 1024;
    o.vocab = 4096;
    o.seed = 5;
    o.family = GetParam().family;
    make_tiny_model(dir_, o);
  }

  Plan plan(int ranks) const {
    Deployment d;
    d.model.path = dir_;
    d.model.dtype = GetParam().dtype;
    d.model.quantization = GetParam().quantization;
    d.kv_cache.max_batch = 1;
    d.kv_cache.max_seq_len = kSeq;
    for (int r = 0; r < ranks; ++r) d.ranks.push_back(RankSpec{"cpu", int64_t{1} << 30});
    d.placement = "balanced";
    d.cpu_reserve = 0;
    return make_plan(metadata_from_checkpoint(Checkpoint::open(dir_), d.model.dtype, d.model.quantization), d);
  }

  // Loads stage `sp`, checks its weights and KV cache, and returns the peak of the tensor bytes
  // allocated on top of them by one full-length prefill through it.
  int64_t check_stage(const StagePlan& sp) const {
    Checkpoint ckpt = Checkpoint::open(dir_);
    const ModelConfig& cfg = ckpt.config();
    ModelOptions mo;
    mo.dtype = std::string(GetParam().dtype) == "float32" ? at::kFloat : at::kBFloat16;
    const std::string q = GetParam().quantization;
    mo.quantize_bits = q == "int8" ? 8 : q == "int4" ? 4 : 0;
    auto shard = make_shard(cfg, ShardSpec{sp.has_embedding, sp.layer_begin, sp.layer_end, sp.has_head, {}}, mo);
    shard->load(ckpt);
    EXPECT_EQ(shard->parameter_bytes(), sp.bytes.weights) << "rank " << sp.rank << ": weights held vs planned";
    KVCache cache = shard->make_cache(1, kSeq);
    EXPECT_EQ(cache.bytes(), sp.bytes.kv_cache) << "rank " << sp.rank << ": KV cache vs planned";
    int64_t peak = 0;
    // A fresh thread: the GEMM workspace is thread-local (a reused one would not be counted).
    std::thread([&] {
      std::vector<int64_t> ids(kSeq);
      for (int64_t i = 0; i < kSeq; ++i) ids[static_cast<size_t>(i)] = 5 + i;
      const BatchLayout layout{SeqChunk{0, 0, kSeq, kSeq, kSeq - 1}};
      at::Tensor input = sp.has_embedding ? at::Tensor() : at::randn({kSeq, cfg.hidden_size});  // as received
      const int64_t base = counter().restart();
      at::Tensor hidden = sp.has_embedding ? shard->embed(at::tensor(ids, at::kLong)) : input;
      if (sp.num_layers() > 0) hidden = shard->forward_blocks(hidden, layout, cache);
      if (sp.has_head) hidden = shard->head(hidden.narrow(0, kSeq - 1, 1));
      peak = counter().peak() - base;
    }).join();
    return peak;
  }

  std::string dir_;
};

TEST_P(PlannerMemory, PlannedBytesBoundWhatTheStagesAllocate) {
  for (int ranks : {1, 2}) {
    const Plan p = plan(ranks);
    ASSERT_EQ(p.stages.size(), static_cast<size_t>(ranks));
    for (const StagePlan& sp : p.stages) {
      const int64_t measured = check_stage(sp), planned = sp.bytes.activations;
      EXPECT_LE(measured, planned) << name(GetParam()) << ", " << ranks << " ranks, rank " << sp.rank
                                   << ": a full-length prefill allocated more than the plan's activations";
      EXPECT_GE(measured, planned * 3 / 4) << name(GetParam()) << ", " << ranks << " ranks, rank " << sp.rank
                                           << ": the plan's activations are far above what a prefill allocates";
      std::printf("%s, %d ranks, rank %d: activations planned %lld, allocated %lld (%.1f %%)\n", name(GetParam()).c_str(),
                  ranks, sp.rank, static_cast<long long>(planned), static_cast<long long>(measured),
                  100.0 * static_cast<double>(measured) / static_cast<double>(planned));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, PlannerMemory,
                         ::testing::Values(Case{"float32", "", TinyFamily::kChatGLM},
                                           Case{"bfloat16", "", TinyFamily::kChatGLM},
                                           Case{"bfloat16", "int8", TinyFamily::kChatGLM},
                                           Case{"bfloat16", "int4", TinyFamily::kChatGLM},
                                           Case{"float32", "", TinyFamily::kChatGLM2},
                                           Case{"bfloat16", "int4", TinyFamily::kChatGLM2}));

// The planner's view of the CPU's GEMM path is the kernels' own.
TEST(PlannerMemoryKernels, CpuGemmPathMatchesTheLinearKernels) { EXPECT_EQ(cpu_gemm_is_bf16(), bf16_gemm_fast()); }

}  // namespace
}  // namespace glmpipe
