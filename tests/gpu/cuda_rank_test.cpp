// A cuda:0 rank computes the same logits as a cpu rank (models/demo, fp32, then fp16 within a
// tolerance), and a cuda:0 + cpu pipeline matches the single cpu process. Without a CUDA device every
// test skips with the reason (ctest: Skipped); nothing here can pass without a GPU.
#include <gtest/gtest.h>

#include <fstream>

#include "comm/cuda_info.h"
#include "common/npy.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

const char* kIds = "5,8,20,31,47,60,99,120";

// Why this machine cannot run the test ("" when it can). GTEST_SKIP must be in the test body itself.
std::string missing_gpu(int need) {
  const CudaInfo c = cuda_info();
  if (c.devices >= need) return "";
  return "needs " + std::to_string(need) + " CUDA device(s), found " + std::to_string(c.devices) + " (" + c.no_device + ")";
}
#define SKIP_WITHOUT_GPU(n) \
  if (const std::string why = missing_gpu(n); !why.empty()) GTEST_SKIP() << why

std::string deployment(const std::string& dir, const std::vector<std::string>& devices, const std::string& dtype) {
  const std::string path = dir + "/deploy.yaml";
  std::ofstream f(path);
  f << "model: {path: " << test::source_dir() << "/models/demo, dtype: " << dtype << "}\nranks:\n";
  for (const auto& d : devices) f << "  - {device: " << d << ", max_memory: 8GiB, threads: 1}\n";
  f << "placement: balanced\nkv_cache: {max_batch: 1, max_seq_len: 64}\nreserve: {cpu: 64MiB}\n";
  return path;
}

at::Tensor forward(const std::string& dir, const std::string& name, const std::string& args) {
  const std::string out = dir + "/" + name + ".npy";
  auto r = test::run_command(test::glmpipe_bin() + " forward --ids " + kIds + " --out " + out + " " + args);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  return r.exit_code == 0 ? load_npy(out) : at::Tensor();
}

TEST(CudaRank, Fp32LogitsMatchTheCpuRank) {
  SKIP_WITHOUT_GPU(1);
  const std::string dir = test::make_temp_dir("cuda_rank_fp32");
  auto cpu = forward(dir, "cpu", "--model " + test::source_dir() + "/models/demo");
  auto gpu = forward(dir, "gpu", "--config " + deployment(dir, {"cuda:0"}, "float32"));
  ASSERT_TRUE(cpu.defined() && gpu.defined());
  EXPECT_TRUE(at::allclose(cpu, gpu, 1e-3, 1e-3)) << (cpu - gpu).abs().max().item<float>();
  EXPECT_TRUE(cpu.argmax(-1).equal(gpu.argmax(-1)));
}

TEST(CudaRank, Fp16LogitsAgreeWithTheCpuRank) {
  SKIP_WITHOUT_GPU(1);
  const std::string dir = test::make_temp_dir("cuda_rank_fp16");
  auto cpu = forward(dir, "cpu", "--model " + test::source_dir() + "/models/demo");
  auto gpu = forward(dir, "gpu", "--config " + deployment(dir, {"cuda:0"}, "float16"));
  ASSERT_TRUE(cpu.defined() && gpu.defined());
  const float scale = cpu.abs().max().item<float>();
  EXPECT_LT((cpu - gpu).abs().max().item<float>(), 0.05f * scale);
}

TEST(CudaRank, GpuPlusCpuPipelineMatchesOneProcess) {
  SKIP_WITHOUT_GPU(1);
  const std::string dir = test::make_temp_dir("cuda_rank_pipeline");
  auto one = forward(dir, "one", "--model " + test::source_dir() + "/models/demo");
  auto two = forward(dir, "two", "--config " + deployment(dir, {"cuda:0", "cpu"}, "float32"));
  ASSERT_TRUE(one.defined() && two.defined());
  EXPECT_TRUE(at::allclose(one, two, 1e-3, 1e-3)) << (one - two).abs().max().item<float>();
}

}  // namespace
}  // namespace glmpipe
