// Cross-checks with Python's torch (/usr/bin/python3, Debian's torch 1.13), both directions:
//   our torch.save writer -> torch.load, values compared in Python;
//   Python torch.save (OrderedDict with _metadata, nn.Parameter, views sharing one storage,
//   fp16/bf16/int8, 0-d) -> our zip + pickle reader, values compared here.
// Skipped with a message when /usr/bin/python3 cannot import torch.
#include <gtest/gtest.h>

#include <fstream>

#include "checkpoint/checkpoint.h"
#include "checkpoint/tiny_model.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

const char* kPython = "/usr/bin/python3";

bool python_has_torch() {
  return test::run_command(std::string(kPython) + " -c 'import torch'").exit_code == 0;
}

ModelConfig small_config() {
  TinyModelOptions o;
  return tiny_model_config(o);
}

TEST(CheckpointPython, TorchLoadReadsOurBinFiles) {
  if (!python_has_torch()) GTEST_SKIP() << kPython << " cannot import torch";
  const std::string dir = test::make_temp_dir("ckpt_py_w");
  at::Tensor base = at::arange(24, at::kFloat).reshape({4, 6});
  WriteOptions w;
  w.format = CheckpointFormat::kBin;
  w.shards = 2;
  write_checkpoint(dir, small_config(),
                   {{"f32", base}, {"f16", (base / 4).to(at::kHalf)}, {"bf16", (base / 8).to(at::kBFloat16)},
                    {"i8", (base - 12).to(at::kChar)}, {"transposed", base.t()}, {"scalar", at::scalar_tensor(3.5, at::kDouble)},
                    {"big", at::arange(70000, at::kFloat)}},
                   w);
  const std::string script = dir + "/check.py";
  std::ofstream(script) << R"(import sys, torch
d = sys.argv[1]
sd = {}
for f in ['pytorch_model-00001-of-00002.bin', 'pytorch_model-00002-of-00002.bin']:
    sd.update(torch.load(d + '/' + f))
base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
want = {'f32': base, 'f16': (base / 4).half(), 'bf16': (base / 8).bfloat16(), 'i8': (base - 12).to(torch.int8),
        'transposed': base.t(), 'scalar': torch.tensor(3.5, dtype=torch.float64), 'big': torch.arange(70000, dtype=torch.float32)}
assert sorted(sd) == sorted(want), sorted(sd)
for k, v in want.items():
    assert sd[k].dtype == v.dtype and sd[k].shape == v.shape and torch.equal(sd[k], v), k
print('OK', len(sd))
)";
  test::RunResult r = test::run_command(std::string(kPython) + " " + script + " " + dir);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "OK 7\n") << r.err;
  // A whole tiny model too (fp16, int4) loads in Python with the expected names.
  TinyModelOptions o;
  o.format = CheckpointFormat::kBin;
  o.dtype = at::kHalf;
  o.quantization_bit = 4;
  make_tiny_model(dir + "/tiny", o);
  r = test::run_command(std::string(kPython) + " -c \"import torch; sd = torch.load('" + dir +
                        "/tiny/pytorch_model.bin'); w = sd['transformer.layers.1.mlp.dense_h_to_4h.weight']; "
                        "print(len(sd), w.dtype, tuple(w.shape), sd['transformer.final_layernorm.weight'].dtype)\"");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "38 torch.int8 (256, 32) torch.float32\n") << r.err;
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(CheckpointPython, OurReaderReadsTorchSaveFiles) {
  if (!python_has_torch()) GTEST_SKIP() << kPython << " cannot import torch";
  const std::string dir = test::make_temp_dir("ckpt_py_r");
  save_model_config(small_config(), dir + "/config.json");
  const std::string script = dir + "/make.py";
  std::ofstream(script) << R"(import sys, torch
base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
lin = torch.nn.Linear(6, 4)
with torch.no_grad():
    lin.weight.copy_(base)
    lin.bias.copy_(torch.arange(4.0))
sd = lin.state_dict()                       # OrderedDict with _metadata (pickled via BUILD)
sd['param'] = torch.nn.Parameter(base * 2)  # _rebuild_parameter
sd['base'] = base
sd['view_t'] = base.t()                     # same storage, transposed strides
sd['view_slice'] = base[1:3, 2:5]           # same storage, storage offset 8
sd['half'] = (base / 4).half()
sd['bf16'] = (base / 8).bfloat16()
sd['i8'] = (base - 12).to(torch.int8)
sd['scalar'] = torch.tensor(3.5)
sd['big'] = torch.arange(300000, dtype=torch.float32)
torch.save(sd, sys.argv[1] + '/pytorch_model.bin')
)";
  test::RunResult r = test::run_command(std::string(kPython) + " " + script + " " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;

  Checkpoint ck = Checkpoint::open(dir);
  at::Tensor base = at::arange(24, at::kFloat).reshape({4, 6});
  EXPECT_EQ(ck.tensors().size(), 11u);
  EXPECT_TRUE(at::equal(ck.load("weight", at::kFloat), base));
  EXPECT_TRUE(at::equal(ck.load("bias", at::kFloat), at::arange(4, at::kFloat)));
  EXPECT_TRUE(at::equal(ck.load("param", at::kFloat), base * 2));
  EXPECT_TRUE(at::equal(ck.load("view_t", at::kFloat), base.t()));
  EXPECT_TRUE(at::equal(ck.map("view_t"), base.t()));
  EXPECT_TRUE(at::equal(ck.load("view_slice", at::kFloat), base.slice(0, 1, 3).slice(1, 2, 5)));
  EXPECT_EQ(ck.info("view_slice").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ck.info("view_slice").nbytes, 24);
  EXPECT_EQ(ck.info("half").dtype, at::kHalf);
  EXPECT_TRUE(at::equal(ck.load("half", at::kHalf), (base / 4).to(at::kHalf)));
  EXPECT_TRUE(at::equal(ck.load("bf16", at::kFloat), (base / 8).to(at::kBFloat16).to(at::kFloat)));
  EXPECT_EQ(ck.info("i8").dtype, at::kChar);
  EXPECT_TRUE(at::equal(ck.load("i8", at::kChar), (base - 12).to(at::kChar)));
  EXPECT_EQ(ck.info("scalar").shape, std::vector<int64_t>{});
  EXPECT_EQ(ck.load("scalar", at::kFloat).item<float>(), 3.5f);
  EXPECT_TRUE(at::equal(ck.load("big", at::kFloat), at::arange(300000, at::kFloat)));
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace
}  // namespace glmpipe
