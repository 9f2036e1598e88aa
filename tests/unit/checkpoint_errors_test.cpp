// Every bad input of the checkpoint layer is a glmpipe::Error whose message names the file and,
// where one is involved, the tensor or key.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "checkpoint/pickle.h"
#include "checkpoint/tiny_model.h"
#include "checkpoint/torch_zip.h"
#include "common/error.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

// Runs `fn`, expects an Error and returns its message ("" if nothing was thrown).
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_CONTAINS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg)

class CheckpointErrors : public testing::Test {
 protected:
  void SetUp() override { dir_ = test::make_temp_dir("ckpt_err"); }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  void make(CheckpointFormat fmt, int shards, int bits = 0) {
    TinyModelOptions o;
    o.format = fmt;
    o.shards = shards;
    o.quantization_bit = bits;
    make_tiny_model(dir_, o);
  }
  void write_bytes(const std::string& name, const std::string& bytes) {
    std::ofstream(dir_ + "/" + name, std::ios::binary | std::ios::trunc) << bytes;
  }
  void write_config() { save_model_config(tiny_model_config(TinyModelOptions{}), dir_ + "/config.json"); }
  std::string safetensors_with_header(const std::string& header, size_t data_bytes) {
    uint64_t n = header.size();
    return std::string(reinterpret_cast<const char*>(&n), 8) + header + std::string(data_bytes, '\0');
  }
  void edit_json(const std::string& name, const std::function<void(nlohmann::json&)>& fn) {
    nlohmann::json j;
    {
      std::ifstream in(dir_ + "/" + name);
      in >> j;
    }
    fn(j);
    std::ofstream(dir_ + "/" + name, std::ios::trunc) << j.dump();
  }
  std::string dir_;
};

TEST_F(CheckpointErrors, MissingDirectory) {
  std::string msg = error_of([&] { Checkpoint::open(dir_ + "/nope"); });
  EXPECT_CONTAINS(msg, dir_ + "/nope");
}

TEST_F(CheckpointErrors, MissingConfig) {
  std::string msg = error_of([&] { Checkpoint::open(dir_); });
  EXPECT_CONTAINS(msg, "config.json");
}

TEST_F(CheckpointErrors, NoWeights) {
  write_config();
  std::string msg = error_of([&] { Checkpoint::open(dir_); });
  EXPECT_CONTAINS(msg, "no weights");
  EXPECT_CONTAINS(msg, dir_);
}

TEST_F(CheckpointErrors, ConfigMissingKeyAndWrongModelType) {
  write_config();
  edit_json("config.json", [](nlohmann::json& j) { j.erase("num_attention_heads"); });
  std::string msg = error_of([&] { load_model_config(dir_); });
  EXPECT_CONTAINS(msg, "config.json");
  EXPECT_CONTAINS(msg, "num_attention_heads");
  write_config();
  edit_json("config.json", [](nlohmann::json& j) { j["model_type"] = "chatglm2"; });
  msg = error_of([&] { load_model_config(dir_ + "/config.json"); });
  EXPECT_CONTAINS(msg, "model_type");
  EXPECT_CONTAINS(msg, "chatglm2");
}

// `in >> json` stops after the first value: trailing bytes were silently ignored.
TEST_F(CheckpointErrors, TrailingGarbageInIndexJson) {
  make(CheckpointFormat::kSafetensors, 2);
  const std::string index = dir_ + "/model.safetensors.index.json";
  std::ofstream(index, std::ios::app) << "} garbage";
  std::string msg = error_of([&] { Checkpoint::open(dir_); });
  EXPECT_CONTAINS(msg, "model.safetensors.index.json");
  EXPECT_CONTAINS(msg, "invalid JSON");
}

TEST_F(CheckpointErrors, IndexNamesMissingShardFile) {
  make(CheckpointFormat::kSafetensors, 2);
  std::remove((dir_ + "/model-00002-of-00002.safetensors").c_str());
  std::string msg = error_of([&] { Checkpoint::open(dir_); });
  EXPECT_CONTAINS(msg, "model-00002-of-00002.safetensors");
}

TEST_F(CheckpointErrors, TensorInIndexButNotInShard) {
  for (auto fmt : {CheckpointFormat::kSafetensors, CheckpointFormat::kBin}) {
    make(fmt, 2);
    const bool bin = fmt == CheckpointFormat::kBin;
    const std::string index = bin ? "pytorch_model.bin.index.json" : "model.safetensors.index.json";
    const std::string shard = bin ? "pytorch_model-00001-of-00002.bin" : "model-00001-of-00002.safetensors";
    edit_json(index, [&](nlohmann::json& j) { j["weight_map"]["transformer.layers.9.extra.weight"] = shard; });
    std::string msg = error_of([&] { Checkpoint::open(dir_); });
    EXPECT_CONTAINS(msg, "transformer.layers.9.extra.weight");
    EXPECT_CONTAINS(msg, shard);
  }
}

TEST_F(CheckpointErrors, TruncatedShard) {
  for (auto fmt : {CheckpointFormat::kSafetensors, CheckpointFormat::kBin}) {
    make(fmt, 1);
    const std::string file = fmt == CheckpointFormat::kBin ? "pytorch_model.bin" : "model.safetensors";
    const std::string path = dir_ + "/" + file;
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    write_bytes(file, bytes.substr(0, bytes.size() / 2));
    std::string msg = error_of([&] { Checkpoint::open(dir_); });
    EXPECT_CONTAINS(msg, path);
    if (fmt == CheckpointFormat::kSafetensors) EXPECT_CONTAINS(msg, "truncated");
  }
}

TEST_F(CheckpointErrors, ShapeContradictsConfig) {
  make(CheckpointFormat::kSafetensors, 1);
  edit_json("config.json", [](nlohmann::json& j) { j["inner_hidden_size"] = 128; });
  std::string msg = error_of([&] { Checkpoint::open(dir_); });
  EXPECT_CONTAINS(msg, "model.safetensors");
  EXPECT_CONTAINS(msg, "mlp.dense_");
  EXPECT_CONTAINS(msg, "128]");
  // A float checkpoint claimed to be int8 is rejected too.
  make(CheckpointFormat::kBin, 1);
  edit_json("config.json", [](nlohmann::json& j) { j["quantization_bit"] = 8; });
  msg = error_of([&] { Checkpoint::open(dir_); });
  EXPECT_CONTAINS(msg, "pytorch_model.bin");
  EXPECT_CONTAINS(msg, "int8");
}

TEST_F(CheckpointErrors, LayerBeyondConfig) {
  make(CheckpointFormat::kSafetensors, 1);
  edit_json("config.json", [](nlohmann::json& j) { j["num_layers"] = 1; });
  std::string msg = error_of([&] { Checkpoint::open(dir_); });
  EXPECT_CONTAINS(msg, "transformer.layers.1.");
}

TEST_F(CheckpointErrors, UnsupportedDtype) {
  write_config();
  write_bytes("model.safetensors",
              safetensors_with_header(R"({"x.weight":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2));
  std::string msg = error_of([&] { Checkpoint::open(dir_); });
  EXPECT_CONTAINS(msg, "model.safetensors");
  EXPECT_CONTAINS(msg, "x.weight");
  EXPECT_CONTAINS(msg, "F8_E4M3");
}

TEST_F(CheckpointErrors, CorruptJsonHeader) {
  write_config();
  write_bytes("model.safetensors", safetensors_with_header(R"({"x.weight":{"dtype":"F32",)", 16));
  std::string msg = error_of([&] { Checkpoint::open(dir_); });
  EXPECT_CONTAINS(msg, "model.safetensors");
  EXPECT_CONTAINS(msg, "JSON");
  // Header length beyond the file.
  write_bytes("model.safetensors", std::string("\xff\xff\xff\x00\x00\x00\x00\x00{}", 10));
  msg = error_of([&] { Checkpoint::open(dir_); });
  EXPECT_CONTAINS(msg, "model.safetensors");
}

TEST_F(CheckpointErrors, SafetensorsOffsetsOutOfBounds) {
  write_config();
  write_bytes("model.safetensors",
              safetensors_with_header(R"({"x.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8));
  std::string msg = error_of([&] { Checkpoint::open(dir_); });
  EXPECT_CONTAINS(msg, "x.weight");
  EXPECT_CONTAINS(msg, "beyond the end");
}

TEST_F(CheckpointErrors, PickleWithUnexpectedCallable) {
  write_config();
  {
    ZipWriter zip(dir_ + "/pytorch_model.bin");
    const std::string pkl = std::string("\x80\x02") + "cos\nsystem\nX\x04\x00\x00\x00true\x85R.";
    zip.add("pytorch_model/data.pkl", pkl.data(), pkl.size());
    zip.add("pytorch_model/version", "3\n", 2);
    zip.finish();
  }
  std::string msg = error_of([&] { Checkpoint::open(dir_); });
  EXPECT_CONTAINS(msg, "pytorch_model.bin");
  EXPECT_CONTAINS(msg, "os.system");
}

// A data.pkl of 16 Mi one-byte EMPTY_LIST opcodes once peaked at 4.9 GB: the object limit stops it
// early, naming the file and the limit, with little memory used on the way.
TEST_F(CheckpointErrors, PickleObjectLimitBoundsMemory) {
  const std::string pkl = "\x80\x02" + std::string(16 << 20, ']');
  struct rusage before {}, after {};
  ::getrusage(RUSAGE_SELF, &before);
  std::string msg = error_of([&] {
    unpickle_state_dict(reinterpret_cast<const uint8_t*>(pkl.data()), pkl.size(), "x/pytorch_model.bin");
  });
  ::getrusage(RUSAGE_SELF, &after);
  EXPECT_CONTAINS(msg, "x/pytorch_model.bin");
  EXPECT_CONTAINS(msg, "limit of " + std::to_string(kPickleMaxObjects) + " objects");
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 600 * 1024) << "peak RSS grew by " << after.ru_maxrss - before.ru_maxrss
                                                           << " KiB";
  // The size cap itself.
  const std::string big(kPickleMaxBytes + 1, 'N');
  msg = error_of([&] { unpickle_state_dict(reinterpret_cast<const uint8_t*>(big.data()), big.size(), "y.bin"); });
  EXPECT_CONTAINS(msg, "limit of " + std::to_string(kPickleMaxBytes) + " bytes");
}

TEST_F(CheckpointErrors, NotAZipFile) {
  write_config();
  write_bytes("pytorch_model.bin", std::string(100, 'x'));
  std::string msg = error_of([&] { Checkpoint::open(dir_); });
  EXPECT_CONTAINS(msg, "pytorch_model.bin");
}

// A shard cut short while it is open (after its first use mapped it): the pread of a tensor loaded
// as stored and the page population of a resident view both fail with one error naming the file,
// not a SIGBUS.
TEST_F(CheckpointErrors, ShardTruncatedAfterMapping) {
  make(CheckpointFormat::kSafetensors, 1, 8);
  const std::string path = dir_ + "/model.safetensors";
  Checkpoint ck = Checkpoint::open(dir_);
  ck.load("transformer.word_embeddings.weight", at::kFloat);  // maps the shard
  const std::string name = "transformer.layers.1.mlp.dense_4h_to_h.weight";  // int8, in the last quarter
  ASSERT_EQ(ck.info(name).dtype, at::kChar);
  EXPECT_EQ(ck.load(name, at::kChar).numel(), ck.map_resident(name).numel());  // both work before
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  ASSERT_EQ(::truncate(path.c_str(), st.st_size / 4), 0);
  std::string msg = error_of([&] { ck.load(name, at::kChar); });
  EXPECT_CONTAINS(msg, path);
  EXPECT_CONTAINS(msg, "shorter");
  msg = error_of([&] { ck.map_resident(name); });
  EXPECT_CONTAINS(msg, path);
  EXPECT_CONTAINS(msg, "cannot read");
}

TEST_F(CheckpointErrors, UnknownTensorName) {
  make(CheckpointFormat::kSafetensors, 1);
  Checkpoint ck = Checkpoint::open(dir_);
  std::string msg = error_of([&] { ck.load("transformer.nope", at::kFloat); });
  EXPECT_CONTAINS(msg, "transformer.nope");
}

TEST_F(CheckpointErrors, WriterLeavesNothingOnError) {
  ModelConfig cfg = tiny_model_config(TinyModelOptions{});
  WriteOptions w;
  w.format = CheckpointFormat::kSafetensors;
  w.shards = 2;
  // complex64 is not writable: the first shard is fine, the second fails; no file remains.
  std::vector<std::pair<std::string, at::Tensor>> t = {{"a", at::ones({2})},
                                                       {"b", at::ones({2}, at::kComplexFloat)}};
  std::string msg = error_of([&] { write_checkpoint(dir_, cfg, t, w); });
  EXPECT_FALSE(msg.empty());
  EXPECT_EQ(test::run_command("ls -A '" + dir_ + "' | wc -l").out, "0\n");
}

}  // namespace
}  // namespace glmpipe
