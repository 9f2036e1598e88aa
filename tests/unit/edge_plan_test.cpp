// Which transport each edge of a plan gets (comm/edge_plan.h), for CPU-only, GPU-only and mixed
// deployments, with and without NCCL in the build. No process is started.
#include <gtest/gtest.h>

#include "comm/edge_plan.h"
#include "common/error.h"

namespace glmpipe {
namespace {

using Devices = std::vector<std::string>;

TEST(EdgePlan, OneProcessHasNoEdges) {
  auto e = select_edges({"cuda:0"}, 0, true);
  EXPECT_FALSE(e.prev.exists());
  EXPECT_FALSE(e.next.exists());
  EXPECT_FALSE(e.feedback.exists());
  EXPECT_FALSE(e.uses_nccl());
  EXPECT_TRUE(nccl_members({"cuda:0"}, true).empty());
}

TEST(EdgePlan, CpuOnlyPlanIsAllMpi) {
  const Devices d = {"cpu", "cpu", "cpu"};
  for (int r = 0; r < 3; ++r) {
    auto e = select_edges(d, r, true);
    EXPECT_EQ(e.prev.exists(), r > 0);
    EXPECT_EQ(e.next.exists(), r < 2);
    EXPECT_EQ(e.feedback.exists(), r == 0 || r == 2);
    EXPECT_FALSE(e.uses_nccl()) << e.to_string();
  }
  EXPECT_EQ(select_edges(d, 1, true).prev.peer, 0);
  EXPECT_EQ(select_edges(d, 1, true).next.peer, 2);
  EXPECT_EQ(select_edges(d, 0, true).feedback.peer, 2);
  EXPECT_EQ(select_edges(d, 2, true).feedback.peer, 0);
  EXPECT_TRUE(nccl_members(d, true).empty());
}

TEST(EdgePlan, GpuOnlyPlanUsesNcclForActivationsAndMpiForFeedback) {
  const Devices d = {"cuda:0", "cuda:1", "cuda:2"};
  auto first = select_edges(d, 0, true);
  EXPECT_EQ(first.next.kind, TransportKind::kNccl);
  EXPECT_EQ(first.feedback.kind, TransportKind::kMpi);  // token ids are host tensors
  auto mid = select_edges(d, 1, true);
  EXPECT_EQ(mid.prev.kind, TransportKind::kNccl);
  EXPECT_EQ(mid.next.kind, TransportKind::kNccl);
  EXPECT_FALSE(mid.feedback.exists());
  auto last = select_edges(d, 2, true);
  EXPECT_EQ(last.prev.kind, TransportKind::kNccl);
  EXPECT_EQ(last.feedback.kind, TransportKind::kMpi);
  EXPECT_EQ(nccl_members(d, true), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(first.to_string(),
            "prev: none; next: rank 1 nccl (cuda:0 -> cuda:1); feedback: rank 2 mpi (host tensors (token ids, "
            "sampling parameters))");
}

TEST(EdgePlan, MixedPlanPutsEveryEdgeTouchingACpuRankOnMpi) {
  // GPU, GPU, CPU (what does not fit on the GPUs), GPU
  const Devices d = {"cuda:0", "cuda:1", "cpu", "cuda:2"};
  EXPECT_EQ(select_edges(d, 0, true).next.kind, TransportKind::kNccl);
  EXPECT_EQ(select_edges(d, 1, true).prev.kind, TransportKind::kNccl);
  EXPECT_EQ(select_edges(d, 1, true).next.kind, TransportKind::kMpi);
  EXPECT_EQ(select_edges(d, 2, true).prev.kind, TransportKind::kMpi);
  EXPECT_EQ(select_edges(d, 2, true).next.kind, TransportKind::kMpi);
  EXPECT_EQ(select_edges(d, 3, true).prev.kind, TransportKind::kMpi);
  // Rank 3 is a GPU but has no NCCL edge: it stays out of the communicator, as does the CPU rank.
  EXPECT_EQ(nccl_members(d, true), (std::vector<int>{0, 1}));
  EXPECT_FALSE(select_edges(d, 3, true).uses_nccl());
}

TEST(EdgePlan, CudaPairWithoutNcclInTheBuildFallsBackToMpi) {
  const Devices d = {"cuda:0", "cuda:1"};
  auto e = select_edges(d, 0, false);
  EXPECT_EQ(e.next.kind, TransportKind::kMpi);
  EXPECT_NE(e.next.reason.find("no NCCL"), std::string::npos) << e.next.reason;
  EXPECT_TRUE(nccl_members(d, false).empty());
}

TEST(EdgePlan, DeviceNames) {
  EXPECT_TRUE(is_cuda_device("cuda"));
  EXPECT_TRUE(is_cuda_device("cuda:3"));
  EXPECT_FALSE(is_cuda_device("cpu"));
  EXPECT_FALSE(is_cuda_device("cudax"));
  EXPECT_THROW(select_edges({"cpu"}, 1, true), Error);
}

}  // namespace
}  // namespace glmpipe
