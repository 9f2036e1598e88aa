// make_tiny_model: names/shapes/dtypes of ChatGLM-6B v1, determinism, value statistics, special
// ids, int8/int4 quantization layout, and the make-tiny-model CLI contract.
#include <gtest/gtest.h>

#include "checkpoint/checkpoint.h"
#include "checkpoint/tiny_model.h"
#include "common/error.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

std::map<std::string, at::Tensor> as_map(const std::vector<std::pair<std::string, at::Tensor>>& v) {
  return {v.begin(), v.end()};
}

TEST(TinyModel, NamesShapesAndDtypesFollowChatGLM6B) {
  TinyModelOptions o;
  o.layers = 2;
  o.hidden = 64;
  o.heads = 4;
  o.vocab = 100;
  o.dtype = at::kHalf;
  auto t = as_map(make_tiny_tensors(o));
  EXPECT_EQ(t.size(), 1u + 2 * 13 + 2 + 1);
  auto shape = [&](const std::string& n) { return t.at(n).sizes().vec(); };
  using V = std::vector<int64_t>;
  EXPECT_EQ(shape("transformer.word_embeddings.weight"), (V{100, 64}));
  EXPECT_EQ(shape("transformer.layers.1.attention.query_key_value.weight"), (V{192, 64}));
  EXPECT_EQ(shape("transformer.layers.1.attention.query_key_value.bias"), (V{192}));
  EXPECT_EQ(shape("transformer.layers.1.attention.dense.weight"), (V{64, 64}));
  EXPECT_EQ(shape("transformer.layers.1.mlp.dense_h_to_4h.weight"), (V{256, 64}));
  EXPECT_EQ(shape("transformer.layers.1.mlp.dense_4h_to_h.weight"), (V{64, 256}));
  EXPECT_EQ(shape("transformer.layers.0.attention.rotary_emb.inv_freq"), (V{4}));  // head_dim 16 / 4
  EXPECT_EQ(shape("lm_head.weight"), (V{100, 64}));
  EXPECT_EQ(t.at("transformer.layers.0.input_layernorm.weight").scalar_type(), at::kFloat);
  EXPECT_EQ(t.at("transformer.final_layernorm.bias").scalar_type(), at::kFloat);
  EXPECT_EQ(t.at("transformer.layers.0.attention.dense.weight").scalar_type(), at::kHalf);
  EXPECT_TRUE(at::equal(t.at("lm_head.weight"), t.at("transformer.word_embeddings.weight")));
  // inv_freq[j] = 1 / 10000^(2j / (head_dim / 2))
  at::Tensor inv = t.at("transformer.layers.0.attention.rotary_emb.inv_freq").to(at::kFloat);
  EXPECT_NEAR(inv[0].item<float>(), 1.0f, 1e-3);
  EXPECT_NEAR(inv[1].item<float>(), 1.0f / std::pow(10000.0f, 2.0f / 8.0f), 1e-3);
  o.dtype = at::kBFloat16;
  EXPECT_EQ(as_map(make_tiny_tensors(o)).at("transformer.layers.0.input_layernorm.weight").scalar_type(),
            at::kBFloat16);
}

TEST(TinyModel, DeterministicForASeedAndWellConditioned) {
  TinyModelOptions o;
  o.hidden = 128;
  o.heads = 4;
  o.vocab = 512;
  auto a = as_map(make_tiny_tensors(o));
  auto b = as_map(make_tiny_tensors(o));
  for (const auto& [k, v] : a) EXPECT_TRUE(at::equal(v, b.at(k))) << k;
  o.seed = 1;
  auto c = as_map(make_tiny_tensors(o));
  EXPECT_FALSE(at::equal(a.at("transformer.layers.0.mlp.dense_h_to_4h.weight"),
                         c.at("transformer.layers.0.mlp.dense_h_to_4h.weight")));
  EXPECT_NEAR(a.at("transformer.word_embeddings.weight").std().item<double>(), 1.0, 0.05);
  EXPECT_NEAR(a.at("transformer.layers.0.mlp.dense_h_to_4h.weight").std().item<double>(), 1.0 / std::sqrt(128.0), 0.01);
  // residual-feeding projections: gain 8, rows centred (see tiny_model.cpp)
  EXPECT_NEAR(a.at("transformer.layers.0.mlp.dense_4h_to_h.weight").std().item<double>(), 8.0 / std::sqrt(512.0), 0.03);
  EXPECT_LT(a.at("transformer.layers.0.mlp.dense_4h_to_h.weight").sum(1).abs().max().item<double>(), 1e-3);
  EXPECT_NEAR(a.at("transformer.layers.0.input_layernorm.weight").mean().item<double>(), 1.0, 0.05);
  EXPECT_NEAR(a.at("transformer.layers.0.attention.dense.bias").std().item<double>(), 0.02, 0.01);
}

TEST(TinyModel, ConfigIdsInsideVocab) {
  TinyModelOptions o;
  o.vocab = 50;
  ModelConfig c = tiny_model_config(o);
  EXPECT_EQ(c.mask_token_id, 45);
  EXPECT_EQ(c.gmask_token_id, 46);
  EXPECT_EQ(c.bos_token_id, 47);
  EXPECT_EQ(c.eos_token_id, 48);
  EXPECT_EQ(c.pad_token_id, 0);
  EXPECT_EQ(c.inner_hidden_size, 4 * o.hidden);
  o.heads = 3;
  EXPECT_THROW(tiny_model_config(o), Error);
}

// Reference unpacking (spec §3.4): high nibble = even column, low nibble = odd column.
at::Tensor unpack4(const at::Tensor& p) {
  at::Tensor b = p.to(at::kInt);
  at::Tensor hi = at::bitwise_right_shift(b, 4);                           // arithmetic: sign kept
  at::Tensor lo = at::bitwise_right_shift(at::bitwise_left_shift(b, 28), 28);
  return at::stack({hi, lo}, 2).reshape({p.size(0), p.size(1) * 2});
}

TEST(TinyModel, QuantizedWeightsDequantizeToTheFloatWeights) {
  for (int bits : {8, 4}) {
    TinyModelOptions o;
    o.dtype = at::kFloat;
    auto f = as_map(make_tiny_tensors(o));
    o.quantization_bit = bits;
    auto q = as_map(make_tiny_tensors(o));
    const std::string n = "transformer.layers.1.attention.query_key_value";
    at::Tensor w = f.at(n + ".weight");
    at::Tensor qw = q.at(n + ".weight");
    at::Tensor scale = q.at(n + ".weight_scale");
    EXPECT_EQ(qw.scalar_type(), at::kChar);
    EXPECT_EQ(scale.scalar_type(), at::kHalf);
    at::Tensor vals = bits == 8 ? qw.to(at::kInt) : unpack4(qw);
    ASSERT_EQ(vals.sizes(), w.sizes());
    const int qmax = bits == 8 ? 127 : 7;
    EXPECT_LE(vals.abs().max().item<int>(), qmax);
    EXPECT_EQ(vals.abs().max().item<int>(), qmax);  // each row's max hits the range end
    at::Tensor deq = vals.to(at::kFloat) * scale.to(at::kFloat).unsqueeze(1);
    at::Tensor err = (deq - w).abs() - scale.to(at::kFloat).unsqueeze(1) * 0.51;
    EXPECT_LE(err.max().item<float>(), 1e-6) << "bits " << bits;
    EXPECT_TRUE(at::equal(q.at(n + ".bias"), f.at(n + ".bias")));
    EXPECT_FALSE(q.count("transformer.word_embeddings.weight_scale"));
  }
}

TEST(TinyModel, CliWritesLoadableCheckpointAndRejectsBadOptions) {
  const std::string dir = test::make_temp_dir("tiny_cli");
  test::RunResult r = test::run_command(test::glmpipe_bin() + " make-tiny-model '" + dir +
                                        "/m' --layers 3 --hidden 32 --heads 2 --inner 48 --vocab 40 --seed 5"
                                        " --dtype bfloat16 --format bin --shards 2 --quantization-bit 8");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Checkpoint ck = Checkpoint::open(dir + "/m");
  EXPECT_EQ(ck.config().num_layers, 3);
  EXPECT_EQ(ck.config().inner_hidden_size, 48);
  EXPECT_EQ(ck.config().quantization_bit, 8);
  EXPECT_EQ(ck.config().torch_dtype, "bfloat16");
  EXPECT_EQ(ck.info("transformer.layers.2.mlp.dense_4h_to_h.weight").shape, (std::vector<int64_t>{32, 48}));
  EXPECT_EQ(ck.info("transformer.word_embeddings.weight").dtype, at::kBFloat16);
  // Same seed through the library gives the same bytes.
  TinyModelOptions o;
  o.layers = 3;
  o.hidden = 32;
  o.heads = 2;
  o.inner = 48;
  o.vocab = 40;
  o.seed = 5;
  o.dtype = at::kBFloat16;
  o.quantization_bit = 8;
  auto t = as_map(make_tiny_tensors(o));
  EXPECT_TRUE(at::equal(ck.load("transformer.layers.0.attention.dense.weight", at::kChar),
                        t.at("transformer.layers.0.attention.dense.weight")));

  for (const std::string bad : {"--heads 5", "--dtype float64", "--format gguf", "--quantization-bit 3",
                                "--shards 0", "--layers 0", "--vocab 4", "--bogus"}) {
    r = test::run_command(test::glmpipe_bin() + " make-tiny-model '" + dir + "/bad' " + bad);
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_FALSE(r.err.empty() && r.out.empty()) << bad;
  }
  r = test::run_command(test::glmpipe_bin() + " make-tiny-model '" + dir + "/bad' --heads 5");
  EXPECT_NE(r.err.find("heads"), std::string::npos) << r.err;
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace
}  // namespace glmpipe
