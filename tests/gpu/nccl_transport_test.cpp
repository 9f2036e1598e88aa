// NCCL transport. Without CUDA in the build: the factory says so. With CUDA but fewer than 2 devices:
// skipped (NCCL refuses two ranks on one GPU). With 2+ devices: this executable re-runs itself under
// `mpirun -np 2` (NcclHelper.Exchange) and exchanges raw device buffers and host tensors.
#include <gtest/gtest.h>

#include <unistd.h>

#include <climits>

#include "comm/nccl_transport.h"
#include "comm/rank_context.h"
#include "common/error.h"
#include "launcher/mpirun.h"
#include "tests/test_util.h"

#ifdef GLMPIPE_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace glmpipe {
namespace {

int device_count() {
#ifdef GLMPIPE_HAVE_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
#else
  return 0;
#endif
}

TEST(NcclTransportTest, FactoryReportsABuildWithoutCuda) {
  if (nccl_transport_built()) GTEST_SKIP() << "built with CUDA";
  try {
    make_nccl_transport(RankContext::single());
    ADD_FAILURE() << "make_nccl_transport succeeded without CUDA";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
  }
}

TEST(NcclHelper, Exchange) {
  if (!std::getenv("GLMPIPE_NCCL_HELPER")) GTEST_SKIP() << "helper for NcclTransportTest, runs only under it";
#ifdef GLMPIPE_HAVE_CUDA
  MpiSession session;
  const RankContext& ctx = session.context();
  auto tr = make_nccl_transport(ctx);
  const int64_t n = 4 * 4096;
  std::vector<float> host(n);
  for (int64_t i = 0; i < n; ++i) host[i] = float(i % 1000) + 0.5f;
  void* dev = nullptr;
  ASSERT_EQ(cudaMalloc(&dev, n * sizeof(float)), cudaSuccess);
  if (ctx.rank() == 0) {
    ASSERT_EQ(cudaMemcpy(dev, host.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    tr->isend_device(1, Tag::kActivations, 0, 5, DType::kF32, {4, 4096}, dev)->wait();
    tr->send(1, Tag::kTokens, 0, 6, at::arange(10, at::kLong));  // host tensor, staged
  } else {
    Expectation want;
    want.dtype = DType::kF32;
    want.shape = {-1, 4096};
    want.seq_id = 5;
    ActivationHeader h = tr->recv_device(0, Tag::kActivations, want, dev, n * sizeof(float));
    EXPECT_EQ(h.nbytes, n * int64_t(sizeof(float)));
    std::vector<float> back(n);
    ASSERT_EQ(cudaMemcpy(back.data(), dev, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(back, host);
    Received r = tr->recv(0, Tag::kTokens);
    EXPECT_TRUE(r.tensor.equal(at::arange(10, at::kLong)));
  }
  tr->barrier();
  cudaFree(dev);
#endif
}

TEST(NcclTransportTest, TwoRanksExchangeDeviceBuffers) {
  if (!nccl_transport_built()) GTEST_SKIP() << "built without CUDA";
  const int devices = device_count();
  if (devices < 2) GTEST_SKIP() << "needs 2 CUDA devices, found " << devices;
  char exe[PATH_MAX] = {0};
  ASSERT_GT(::readlink("/proc/self/exe", exe, sizeof(exe) - 1), 0);
  LaunchSpec spec;
  spec.ranks = {{"", 1, 0, {}}, {"", 1, 1, {}}};
  spec.forward_env = {"GLMPIPE_NCCL_HELPER"};
  auto r = test::run_command("export GLMPIPE_NCCL_HELPER=1; " +
                             shell_quote_join(build_mpirun_argv(spec, {exe, "--gtest_filter=NcclHelper.*"})));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("FAILED"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace glmpipe
