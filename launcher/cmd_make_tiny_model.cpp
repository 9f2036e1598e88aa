// `glmpipe make-tiny-model OUT_DIR [--layers L --hidden H --heads N --inner I --vocab V --seed S
//   --dtype float32|float16|bfloat16 --format bin|safetensors --shards K --quantization-bit 0|4|8
//   --no-lm-head --family chatglm|chatglm2|glm4 --kv-groups G --kv-channels D --rope-ratio R
//   --name-or-path NAME]`: writes a random-weight checkpoint of the family (default chatglm = ChatGLM-6B
//   v1; chatglm2 = ChatGLM2/3-6B config values; glm4 = GLM-4-9B-chat values), see model/tiny_model.h.
#include <iostream>
#include <map>
#include <memory>

#include "checkpoint/tiny_model.h"
#include "launcher/command.h"

namespace {

struct MakeTinyOptions {
  std::string out_dir;
  glmpipe::TinyModelOptions tiny;
  std::string dtype = "float32";
  std::string format = "safetensors";
  bool no_lm_head = false;
  bool untied = false;
  std::string family = "chatglm";
};

void run_make_tiny_model(const MakeTinyOptions& o) {
  static const std::map<std::string, at::ScalarType> kDtypes = {
      {"float32", at::kFloat}, {"float16", at::kHalf}, {"bfloat16", at::kBFloat16}};
  glmpipe::TinyModelOptions t = o.tiny;
  t.dtype = kDtypes.at(o.dtype);
  t.format = o.format == "bin" ? glmpipe::CheckpointFormat::kBin : glmpipe::CheckpointFormat::kSafetensors;
  t.write_lm_head = !o.no_lm_head;
  t.tie_word_embeddings = !o.untied;
  t.family = glmpipe::parse_tiny_family(o.family);
  glmpipe::ModelConfig c = glmpipe::make_tiny_model(o.out_dir, t);
  std::cout << "wrote " << o.out_dir << ": layers " << c.num_layers << ", hidden " << c.hidden_size << ", heads "
            << c.num_attention_heads << ", inner " << c.inner_hidden_size << ", vocab " << c.vocab_size << ", "
            << o.dtype << ", family " << o.family << " (kv groups " << c.kv_heads() << ")"
            << ", " << o.format << ", shards " << t.shards << ", quantization_bit " << c.quantization_bit
            << "\n";
}

glmpipe::CommandRegistrar reg("make-tiny-model", "Write a random-weight ChatGLM-family checkpoint (tests, benchmarks)",
                              [](CLI::App& sub) {
  auto o = std::make_shared<MakeTinyOptions>();
  sub.add_option("out_dir", o->out_dir, "output directory (created)")->required();
  sub.add_option("--layers", o->tiny.layers, "number of GLM blocks")->capture_default_str();
  sub.add_option("--hidden", o->tiny.hidden, "hidden size")->capture_default_str();
  sub.add_option("--heads", o->tiny.heads, "attention heads")->capture_default_str();
  sub.add_option("--inner", o->tiny.inner, "MLP inner size (0 = 4 * hidden)")->capture_default_str();
  sub.add_option("--vocab", o->tiny.vocab, "vocabulary size (>= 8)")->capture_default_str();
  sub.add_option("--seed", o->tiny.seed, "random seed")->capture_default_str();
  sub.add_option("--dtype", o->dtype, "float32|float16|bfloat16")
      ->check(CLI::IsMember({"float32", "float16", "bfloat16"}))->capture_default_str();
  sub.add_option("--format", o->format, "bin|safetensors")
      ->check(CLI::IsMember({"bin", "safetensors"}))->capture_default_str();
  sub.add_option("--shards", o->tiny.shards, "number of weight files (> 1 writes an index json)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  sub.add_option("--quantization-bit", o->tiny.quantization_bit, "0|4|8")
      ->check(CLI::IsMember({0, 4, 8}))->capture_default_str();
  sub.add_flag("--no-lm-head", o->no_lm_head, "omit lm_head.weight (tied to word_embeddings; chatglm only)");
  sub.add_flag("--untied", o->untied,
               "config tie_word_embeddings false and a random lm_head.weight of its own (chatglm only)");
  sub.add_option("--family", o->family, "chatglm (ChatGLM-6B) | chatglm2 (ChatGLM2/3-6B) | glm4 (GLM-4-9B)")
      ->check(CLI::IsMember({"chatglm", "chatglm2", "glm4"}))->capture_default_str();
  sub.add_option("--kv-groups", o->tiny.kv_groups, "chatglm2/glm4: multi_query_group_num")->capture_default_str();
  sub.add_option("--kv-channels", o->tiny.kv_channels, "chatglm2/glm4: head size (0 = hidden / heads)")
      ->capture_default_str();
  sub.add_option("--rope-ratio", o->tiny.rope_ratio, "chatglm2/glm4: rope_ratio (0 = the family's: 1 / 500)")
      ->capture_default_str();
  sub.add_option("--name-or-path", o->tiny.name_or_path, "chatglm2/glm4: config _name_or_path");
  sub.callback([o] { run_make_tiny_model(*o); });
});

}  // namespace
