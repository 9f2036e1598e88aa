// NCCL transport on real GPUs. Without a CUDA device every test skips with the reason (ctest reports
// it as skipped, not passed: tests/CMakeLists.txt). With 2+ devices: this executable re-runs itself
// under `mpirun -np 2` (DISABLED_NcclHelper.Exchange) and sends CUDA tensors both ways, several in flight.
#include <gtest/gtest.h>

#include <unistd.h>

#include <climits>

#include "comm/cuda_info.h"
#include "comm/nccl_transport.h"
#include "comm/rank_context.h"
#include "common/error.h"
#include "launcher/mpirun.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

#ifndef GLMPIPE_HAVE_CUDA
TEST(NcclTransportTest, FactoryReportsABuildWithoutCuda) {
  try {
    make_nccl_transport(RankContext::single(), {0});
    ADD_FAILURE() << "make_nccl_transport succeeded without CUDA";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
  }
}
#endif

// Run only by TwoRanksExchangeDeviceTensors, in the two ranks it starts (gtest skips DISABLED_ tests).

TEST(DISABLED_NcclHelper, Exchange) {
  MpiSession session;
  const RankContext& ctx = session.context();
  NcclOptions o;
  o.device = ctx.rank();
  o.transport.timeout = std::chrono::seconds(30);
  auto tr = make_nccl_transport(ctx, {0, 1}, o);
  ASSERT_TRUE(tr);
  const at::Device dev(at::kCUDA, ctx.rank());
  const int peer = 1 - ctx.rank();
  // Both ranks send two tensors and receive two: grouped posting keeps this from deadlocking.
  auto a = at::arange(4 * 4096, at::TensorOptions().dtype(at::kFloat).device(dev)).reshape({4, 4096}) + ctx.rank();
  auto b = at::full({3, 5}, 1.5 + ctx.rank(), at::TensorOptions().dtype(at::kHalf).device(dev));
  auto rx1 = tr->irecv(peer, Tag::kActivations);
  auto rx2 = tr->irecv(peer, Tag::kActivations);
  auto s1 = tr->isend(peer, Tag::kActivations, 0, 5, a);
  auto s2 = tr->isend(peer, Tag::kActivations, 0, 6, b);
  Received r1 = rx1->wait(), r2 = rx2->wait();
  s1->wait();
  s2->wait();
  EXPECT_TRUE(r1.tensor.is_cuda());
  EXPECT_EQ(r1.header.seq_id, 5);
  EXPECT_TRUE(r1.tensor.cpu().equal((at::arange(4 * 4096, at::kFloat).reshape({4, 4096}) + peer)));
  EXPECT_EQ(r2.header.seq_id, 6);
  EXPECT_TRUE(r2.tensor.cpu().equal(at::full({3, 5}, 1.5 + peer, at::kHalf)));
  // Host tensors belong on MPI: refused with a message.
  EXPECT_THROW(tr->isend(peer, Tag::kTokens, 0, 0, at::ones({2})), Error);
  tr->barrier();
}

TEST(NcclTransportTest, TwoRanksExchangeDeviceTensors) {
  const CudaInfo c = cuda_info();
  if (!c.built) GTEST_SKIP() << "built without CUDA";
  if (c.devices < 2) GTEST_SKIP() << "needs 2 CUDA devices, found " << c.devices << " (" << c.no_device << ")";
  char exe[PATH_MAX] = {0};
  ASSERT_GT(::readlink("/proc/self/exe", exe, sizeof(exe) - 1), 0);
  LaunchSpec spec;
  spec.ranks = {{"", 1, 0, {}}, {"", 1, 1, {}}};
  auto r = test::run_command(shell_quote_join(build_mpirun_argv(
      spec, {exe, "--gtest_also_run_disabled_tests", "--gtest_filter=DISABLED_NcclHelper.*"})));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("FAILED"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[       OK ] DISABLED_NcclHelper.Exchange"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace glmpipe
