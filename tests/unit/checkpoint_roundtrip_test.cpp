// Checkpoint readers on checkpoints written by our writers: both formats, single file and sharded,
// fp32/fp16/bf16 (+ int8), metadata and values; views saved by torch.save; map() vs load().
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "checkpoint/tiny_model.h"
#include "common/error.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

struct Case {
  CheckpointFormat format;
  int shards;
  at::ScalarType dtype;
};

std::string case_name(const testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  std::string d = c.dtype == at::kFloat ? "f32" : c.dtype == at::kHalf ? "f16" : "bf16";
  return std::string(c.format == CheckpointFormat::kBin ? "bin" : "safetensors") + "_" +
         std::to_string(c.shards) + "shards_" + d;
}

class RoundTrip : public testing::TestWithParam<Case> {};

TEST_P(RoundTrip, MetadataAndValuesMatchWhatWasWritten) {
  const Case c = GetParam();
  TinyModelOptions o;
  o.layers = 3;
  o.hidden = 32;
  o.heads = 4;
  o.vocab = 64;
  o.seed = 7;
  o.dtype = c.dtype;
  o.format = c.format;
  o.shards = c.shards;
  const std::string dir = test::make_temp_dir("ckpt_rt");
  make_tiny_model(dir, o);
  const auto written = make_tiny_tensors(o);

  Checkpoint ck = Checkpoint::open(dir);
  EXPECT_EQ(ck.config().num_layers, 3);
  EXPECT_EQ(ck.config().hidden_size, 32);
  // Every written tensor except inv_freq is listed, sorted, with its on-disk dtype and shape.
  size_t expected = 0;
  for (const auto& [name, t] : written) {
    if (name.find("rotary_emb.inv_freq") != std::string::npos) {
      EXPECT_FALSE(ck.has(name)) << name;
      continue;
    }
    ++expected;
    ASSERT_TRUE(ck.has(name)) << name;
    const TensorInfo& info = ck.info(name);
    EXPECT_EQ(info.dtype, t.scalar_type()) << name;
    EXPECT_EQ(info.shape, t.sizes().vec()) << name;
    EXPECT_EQ(info.nbytes, t.numel() * t.element_size()) << name;
    at::Tensor same = ck.load(name, t.scalar_type());
    EXPECT_TRUE(at::equal(same, t)) << name;
    at::Tensor f32 = ck.load(name, at::kFloat);
    EXPECT_EQ(f32.scalar_type(), at::kFloat);
    EXPECT_TRUE(at::equal(f32, t.to(at::kFloat))) << name;
    at::Tensor mapped = ck.map(name);
    EXPECT_EQ(mapped.scalar_type(), t.scalar_type());
    EXPECT_TRUE(at::equal(mapped, t)) << name;
  }
  EXPECT_EQ(ck.tensors().size(), expected);
  for (size_t i = 1; i < ck.tensors().size(); ++i) EXPECT_LT(ck.tensors()[i - 1].name, ck.tensors()[i].name);
  // LayerNorm is fp32 on disk in an fp16 checkpoint, like the real one.
  EXPECT_EQ(ck.info("transformer.final_layernorm.weight").dtype, c.dtype == at::kHalf ? at::kFloat : c.dtype);
  // Sharded checkpoints really have several files.
  std::set<std::string> files;
  for (const auto& t : ck.tensors()) files.insert(t.file);
  EXPECT_EQ(files.size(), static_cast<size_t>(c.shards));
  std::system(("rm -rf '" + dir + "'").c_str());
}

INSTANTIATE_TEST_SUITE_P(Formats, RoundTrip,
                         testing::Values(Case{CheckpointFormat::kSafetensors, 1, at::kFloat},
                                         Case{CheckpointFormat::kSafetensors, 3, at::kHalf},
                                         Case{CheckpointFormat::kSafetensors, 2, at::kBFloat16},
                                         Case{CheckpointFormat::kBin, 1, at::kHalf},
                                         Case{CheckpointFormat::kBin, 3, at::kFloat},
                                         Case{CheckpointFormat::kBin, 2, at::kBFloat16}),
                         case_name);

TEST(Checkpoint, IndexFilesAndNamesFollowHfLayout) {
  const std::string dir = test::make_temp_dir("ckpt_layout");
  TinyModelOptions o;
  o.format = CheckpointFormat::kBin;
  o.shards = 2;
  make_tiny_model(dir, o);
  EXPECT_TRUE(test::file_exists(dir + "/pytorch_model-00001-of-00002.bin"));
  EXPECT_TRUE(test::file_exists(dir + "/pytorch_model-00002-of-00002.bin"));
  std::ifstream in(dir + "/pytorch_model.bin.index.json");
  nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_TRUE(j["metadata"]["total_size"].is_number());
  EXPECT_EQ(j["weight_map"]["lm_head.weight"], "pytorch_model-00002-of-00002.bin");
  EXPECT_EQ(j["weight_map"]["transformer.word_embeddings.weight"], "pytorch_model-00001-of-00002.bin");
  // Nothing temporary is left behind.
  EXPECT_NE(test::run_command("ls '" + dir + "' | grep -c tmp").out, "");
  EXPECT_EQ(test::run_command("ls '" + dir + "' | grep -c tmp").out, "0\n");
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(Checkpoint, TorchSaveViewsKeepOffsetAndStrides) {
  // A transposed view and a sliced view written as ordinary contiguous tensors by our writer
  // still round-trip; the reader honours strides/offsets (python_test covers real torch views).
  const std::string dir = test::make_temp_dir("ckpt_view");
  at::Tensor base = at::arange(24, at::kFloat).reshape({4, 6});
  ModelConfig cfg;
  cfg.vocab_size = 16;
  cfg.hidden_size = 8;
  cfg.num_layers = 1;
  cfg.num_attention_heads = 2;
  cfg.inner_hidden_size = 32;
  cfg.bos_token_id = cfg.eos_token_id = cfg.mask_token_id = cfg.gmask_token_id = cfg.pad_token_id = 1;
  WriteOptions w;
  w.format = CheckpointFormat::kBin;
  write_checkpoint(dir, cfg, {{"t", base.t()}, {"s", base.slice(1, 1, 4)}}, w);
  Checkpoint ck = Checkpoint::open(dir);
  EXPECT_TRUE(at::equal(ck.load("t", at::kFloat), base.t()));
  EXPECT_TRUE(at::equal(ck.load("s", at::kFloat), base.slice(1, 1, 4)));
  EXPECT_EQ(ck.load("s", at::ScalarType::Undefined).scalar_type(), at::kFloat);
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(Checkpoint, MappedViewOutlivesCheckpoint) {
  const std::string dir = test::make_temp_dir("ckpt_map");
  TinyModelOptions o;
  make_tiny_model(dir, o);
  at::Tensor m;
  at::Tensor want;
  {
    Checkpoint ck = Checkpoint::open(dir);
    m = ck.map("transformer.word_embeddings.weight");
    want = ck.load("transformer.word_embeddings.weight", at::kFloat);
  }
  EXPECT_TRUE(at::equal(m, want));
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(Checkpoint, LmHeadAbsentIsNotListed) {
  const std::string dir = test::make_temp_dir("ckpt_nolm");
  TinyModelOptions o;
  o.write_lm_head = false;
  make_tiny_model(dir, o);
  Checkpoint ck = Checkpoint::open(dir);
  EXPECT_FALSE(ck.has("lm_head.weight"));
  EXPECT_TRUE(ck.has("transformer.word_embeddings.weight"));
  EXPECT_THROW(ck.info("lm_head.weight"), Error);
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(Checkpoint, QuantizedCheckpointsOpenWithInt8Weights) {
  for (int bits : {4, 8}) {
    for (auto fmt : {CheckpointFormat::kBin, CheckpointFormat::kSafetensors}) {
      const std::string dir = test::make_temp_dir("ckpt_q");
      TinyModelOptions o;
      o.quantization_bit = bits;
      o.dtype = at::kHalf;
      o.format = fmt;
      make_tiny_model(dir, o);
      Checkpoint ck = Checkpoint::open(dir);
      EXPECT_EQ(ck.config().quantization_bit, bits);
      const auto& w = ck.info("transformer.layers.1.mlp.dense_4h_to_h.weight");
      EXPECT_EQ(w.dtype, at::kChar);
      EXPECT_EQ(w.shape, (std::vector<int64_t>{64, bits == 8 ? 256 : 128}));
      const auto& s = ck.info("transformer.layers.1.mlp.dense_4h_to_h.weight_scale");
      EXPECT_EQ(s.dtype, at::kHalf);
      EXPECT_EQ(s.shape, (std::vector<int64_t>{64}));
      std::system(("rm -rf '" + dir + "'").c_str());
    }
  }
}

}  // namespace
}  // namespace glmpipe
