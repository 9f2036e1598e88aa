// Published int4/int8 checkpoints (config.json quantization_bit, spec §3) through `glmpipe
// forward`, with no extra flags: logits stay within quantization noise of the same random model
// stored in float, and a 2-rank pipeline gives bit-identical logits to the single process.
// Also: quantize-at-load (--quantize int8) of the float checkpoint.
#include <gtest/gtest.h>

#include <fstream>

#include "checkpoint/tiny_model.h"
#include "common/npy.h"
#include "tests/test_util.h"

using namespace glmpipe;

namespace {

class QuantizedModel : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("quant_model");
    TinyModelOptions o;
    o.layers = 4;
    o.hidden = 128;
    o.heads = 4;
    o.vocab = 300;
    o.seed = 5;
    make_tiny_model(dir_ + "/float", o);
    o.quantization_bit = GetParam();
    make_tiny_model(dir_ + "/quant", o);  // same seed: the same float weights, quantized per row
    std::ofstream(dir_ + "/two.yaml") << "model: {path: unused, dtype: float32}\nranks:\n"
                                      << "  - {device: cpu, max_memory: 1GiB, threads: 1}\n"
                                      << "  - {device: cpu, max_memory: 1GiB, threads: 1}\n"
                                      << "placement: balanced\nkv_cache: {max_batch: 1, max_seq_len: 64}\nreserve: {cpu: 64MiB}\n";
  }
  at::Tensor forward(const std::string& args) {
    const std::string out = dir_ + "/out.npy";
    std::remove(out.c_str());
    auto r = test::run_command("timeout 120 " + test::glmpipe_bin() + " forward " + args +
                               " --ids 11,42,7,150,296,297,33,201 --prefill 6 --out " + out);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? load_npy(out) : at::Tensor();
  }
  std::string dir_;
};

TEST_P(QuantizedModel, LogitsWithinQuantizationNoiseAndPipelineIdentical) {
  auto ref = forward("--model " + dir_ + "/float --threads 1");
  auto q = forward("--model " + dir_ + "/quant --threads 1");
  ASSERT_TRUE(ref.defined() && q.defined());
  // Relative error of the logits: int8 keeps ~1% of the per-row range per weight, int4 ~14%;
  // through 4 blocks the logit error stays a small fraction of the logit spread.
  const float spread = ref.std().item<float>();
  const float err = (q - ref).abs().mean().item<float>();
  const float bound = GetParam() == 8 ? 0.05f : 0.5f;
  EXPECT_LT(err, bound * spread) << "mean |Δlogit| " << err << " vs logit std " << spread;
  EXPECT_GT(err, 0.0f) << "quantized logits identical to float: were the int weights used?";
  auto pipe = forward("--config " + dir_ + "/two.yaml --model " + dir_ + "/quant");
  ASSERT_TRUE(pipe.defined());
  EXPECT_TRUE(at::equal(pipe, q)) << "pipeline max diff " << (pipe - q).abs().max().item<float>();
}

TEST_P(QuantizedModel, QuantizeAtLoadMatchesThePublishedLayout) {
  // Quantizing the float checkpoint while loading gives the same int weights as the checkpoint
  // written in the published layout, hence (nearly) the same logits.
  auto q = forward("--model " + dir_ + "/quant --threads 1");
  auto at_load = forward("--model " + dir_ + "/float --threads 1 --quantize int" + std::to_string(GetParam()));
  ASSERT_TRUE(q.defined() && at_load.defined());
  EXPECT_LE((q - at_load).abs().max().item<float>(), 1e-3f * q.abs().max().item<float>());
}

INSTANTIATE_TEST_SUITE_P(Bits, QuantizedModel, ::testing::Values(4, 8));

}  // namespace
