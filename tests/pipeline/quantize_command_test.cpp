// `glmpipe quantize IN OUT --bits 4|8`: the written checkpoint is in the published layout (int8
// weights + fp16 weight_scale, sharded safetensors + index, config.json with quantization_bit and
// IN's other fields), loads with no extra flags, and gives logits bit-identical to quantizing the
// float checkpoint at load. Bad input fails with one error naming the directory.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "checkpoint/tiny_model.h"
#include "common/npy.h"
#include "tests/test_util.h"

using namespace glmpipe;

namespace {

class QuantizeCommand : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("quantize_cmd");
    TinyModelOptions o;
    o.layers = 3;
    o.hidden = 128;
    o.heads = 4;
    o.vocab = 300;
    o.seed = 9;
    o.dtype = at::kHalf;  // like the published fp16 checkpoint
    o.shards = 2;
    make_tiny_model(dir_ + "/float", o);
    std::ofstream(dir_ + "/float/tokenizer_config.json") << "{\"name\": \"tiny\"}\n";
  }
  at::Tensor forward(const std::string& args) {
    const std::string out = dir_ + "/out.npy";
    std::remove(out.c_str());
    auto r = test::run_command("timeout 120 " + test::glmpipe_bin() + " forward " + args +
                               " --threads 1 --ids 11,42,7,150,296,297,33,201 --prefill 6 --out " + out);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? load_npy(out) : at::Tensor();
  }
  std::string dir_;
};

TEST_P(QuantizeCommand, WritesPublishedLayoutWithLogitsEqualToQuantizeAtLoad) {
  const int bits = GetParam();
  const std::string q = dir_ + "/q" + std::to_string(bits);
  auto r = test::run_command(test::glmpipe_bin() + " quantize " + dir_ + "/float " + q + " --bits " +
                             std::to_string(bits) + " --shards 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Checkpoint ck = Checkpoint::open(q);
  EXPECT_EQ(ck.config().quantization_bit, bits);
  EXPECT_TRUE(std::filesystem::exists(q + "/model.safetensors.index.json")) << "not sharded";
  EXPECT_TRUE(std::filesystem::exists(q + "/tokenizer_config.json")) << "other files not copied";
  const auto& w = ck.info("transformer.layers.1.mlp.dense_h_to_4h.weight");
  EXPECT_EQ(w.dtype, at::kChar);
  EXPECT_EQ(w.shape, (std::vector<int64_t>{512, bits == 4 ? 64 : 128}));
  EXPECT_EQ(ck.info("transformer.layers.1.mlp.dense_h_to_4h.weight_scale").dtype, at::kHalf);
  EXPECT_EQ(ck.info("transformer.word_embeddings.weight").dtype, at::kHalf);  // kept as stored
  EXPECT_FALSE(ck.has("transformer.word_embeddings.weight_scale"));
  auto cfg = nlohmann::json::parse(test::read_file(q + "/config.json"));
  EXPECT_EQ(cfg.at("quantization_bit").get<int>(), bits);
  EXPECT_EQ(cfg.at("num_layers").get<int>(), 3);

  auto pre = forward("--model " + q);
  auto at_load = forward("--model " + dir_ + "/float --quantize int" + std::to_string(bits));
  ASSERT_TRUE(pre.defined() && at_load.defined());
  EXPECT_TRUE(at::equal(pre, at_load)) << "max diff " << (pre - at_load).abs().max().item<float>();
}

TEST_P(QuantizeCommand, RejectsAlreadyQuantizedAndMissingInput) {
  const std::string q = dir_ + "/q";
  ASSERT_EQ(test::run_command(test::glmpipe_bin() + " quantize " + dir_ + "/float " + q + " --bits 8").exit_code, 0);
  auto again = test::run_command(test::glmpipe_bin() + " quantize " + q + " " + dir_ + "/q2 --bits " +
                                 std::to_string(GetParam()));
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("already quantized"), std::string::npos) << again.err;
  auto missing = test::run_command(test::glmpipe_bin() + " quantize " + dir_ + "/nope " + dir_ + "/q3 --bits 4");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find(dir_ + "/nope"), std::string::npos) << missing.err;
}

INSTANTIATE_TEST_SUITE_P(Bits, QuantizeCommand, ::testing::Values(4, 8));

}  // namespace
