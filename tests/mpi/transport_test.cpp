// MPI transport between 3 ranks: ring exchange of several dtypes/shapes, many messages in flight
// matched in order, header validation on the receiver, the liveness timeout, cancellation.
// mpi-np: 3
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <chrono>
#include <set>

#include "comm/mpi_transport.h"
#include "comm/rank_context.h"
#include "common/error.h"

namespace glmpipe {
namespace {

RankContext* g_ctx = nullptr;

class MpiEnv : public ::testing::Environment {
 public:
  void SetUp() override { g_ctx = new RankContext(RankContext::from_mpi()); }
  void TearDown() override {
    delete g_ctx;
    finalize_mpi();
  }
};
[[maybe_unused]] auto* const g_env = ::testing::AddGlobalTestEnvironment(new MpiEnv);

TransportOptions test_options() {
  TransportOptions o;
  o.timeout = std::chrono::seconds(20);  // a broken test fails instead of hanging ctest
  return o;
}

// A tensor whose values identify (sender rank, message index).
at::Tensor payload(int rank, int index, at::ScalarType dt, at::IntArrayRef shape) {
  at::Tensor t = at::arange(at::IntArrayRef(shape).empty() ? 1 : c10::multiply_integers(shape),
                            at::TensorOptions().dtype(at::kDouble));
  t = (t.remainder(97) + 1000 * rank + 100 * index).to(dt);
  return t.reshape(shape);
}

TEST(RankContextTest, FromMpiDescribesTheRing) {
  const RankContext& c = *g_ctx;
  EXPECT_EQ(c.world(), 3);
  EXPECT_EQ(c.num_stages(), 3);
  EXPECT_EQ(c.stage(), c.rank());
  EXPECT_EQ(c.is_first_stage(), c.rank() == 0);
  EXPECT_EQ(c.is_last_stage(), c.rank() == 2);
  EXPECT_EQ(c.prev_rank(), c.rank() == 0 ? -1 : c.rank() - 1);
  EXPECT_EQ(c.next_rank(), c.rank() == 2 ? -1 : c.rank() + 1);
  EXPECT_EQ(c.local_size(), 3);  // all on this host
  EXPECT_EQ(c.local_rank(), c.rank());
  EXPECT_NE(c.thread_level(), ThreadLevel::kNone);
  EXPECT_NE(c.to_string().find("stage " + std::to_string(c.rank()) + " of 3"), std::string::npos) << c.to_string();
}

TEST(MpiTransportTest, RingExchangeOfDtypesAndShapes) {
  auto tr = make_mpi_transport(*g_ctx, test_options());
  const int next = g_ctx->ring_next(), prev = g_ctx->ring_prev();
  const std::vector<at::ScalarType> dtypes = {at::kFloat, at::kBFloat16, at::kLong};
  const std::vector<std::vector<int64_t>> shapes = {{4096}, {1, 4096}, {4, 4096}, {16, 4096}, {2, 3, 5}, {}, {0, 8}};
  std::vector<std::unique_ptr<PendingRecv>> rx;
  std::vector<std::unique_ptr<PendingOp>> tx;
  std::vector<at::Tensor> sent;
  int index = 0;
  for (auto dt : dtypes)
    for (const auto& shape : shapes) {
      Expectation want;
      want.dtype = to_dtype(dt);
      want.shape = shape;
      want.seq_id = index;
      rx.push_back(tr->irecv(prev, Tag::kActivations, want));
      ++index;
    }
  index = 0;
  for (auto dt : dtypes)
    for (const auto& shape : shapes) {
      tx.push_back(tr->isend(next, Tag::kActivations, /*step=*/7, /*seq_id=*/index, payload(g_ctx->rank(), index, dt, shape)));
      ++index;
    }
  index = 0;
  for (auto dt : dtypes)
    for (const auto& shape : shapes) {
      Received r = rx[index]->wait();
      EXPECT_EQ(r.source, prev);
      EXPECT_EQ(r.header.step, 7);
      EXPECT_EQ(r.header.seq_id, index);
      ASSERT_EQ(r.tensor.scalar_type(), dt);
      ASSERT_EQ(r.tensor.sizes().vec(), shape);
      EXPECT_TRUE(r.tensor.equal(payload(prev, index, dt, shape))) << "message " << index;
      ++index;
    }
  for (auto& op : tx) op->wait();
  tr->barrier();
}

TEST(MpiTransportTest, ManyInFlightPerPairMatchInOrderWhateverTheWaitOrder) {
  auto tr = make_mpi_transport(*g_ctx, test_options());
  const int next = g_ctx->ring_next(), prev = g_ctx->ring_prev();
  constexpr int kN = 32;
  std::vector<std::unique_ptr<PendingRecv>> fwd, back;
  for (int k = 0; k < kN; ++k) {
    Expectation want;
    want.seq_id = k;
    want.shape = {1 + k % 3, 4096};
    fwd.push_back(tr->irecv(prev, Tag::kActivations, want));
    Expectation wt;
    wt.seq_id = 1000 + k;
    back.push_back(tr->irecv(next, Tag::kTokens, wt));  // other direction, other tag
  }
  std::vector<std::unique_ptr<PendingOp>> tx;
  for (int k = 0; k < kN; ++k) {
    tx.push_back(tr->isend(next, Tag::kActivations, k, k, payload(g_ctx->rank(), k, at::kFloat, {1 + k % 3, 4096})));
    tx.push_back(tr->isend(prev, Tag::kTokens, k, 1000 + k, payload(g_ctx->rank(), k, at::kLong, {2})));
  }
  // Wait newest first: the transport must still pair the k-th header with the k-th payload.
  for (int k = kN - 1; k >= 0; --k) {
    Received r = fwd[k]->wait();
    EXPECT_EQ(r.header.seq_id, k);
    EXPECT_TRUE(r.tensor.equal(payload(prev, k, at::kFloat, {1 + k % 3, 4096}))) << "activation " << k;
    Received t = back[k]->wait();
    EXPECT_TRUE(t.tensor.equal(payload(next, k, at::kLong, {2}))) << "tokens " << k;
  }
  for (auto& op : tx) op->wait();
  tr->barrier();
}

TEST(MpiTransportTest, AnySourceReportsTheSenderAndRecvIntoProvidedTensor) {
  auto tr = make_mpi_transport(*g_ctx, test_options());
  if (g_ctx->rank() == 0) {
    std::set<int> sources;
    for (int i = 1; i < g_ctx->world(); ++i) {
      at::Tensor into = at::zeros({8}, at::kInt);
      Received r = tr->irecv(kAnySource, Tag::kControl, {}, into)->wait();
      EXPECT_EQ(r.tensor.data_ptr(), into.data_ptr());
      EXPECT_TRUE(into.equal(at::full({8}, r.source, at::kInt)));
      sources.insert(r.source);
    }
    EXPECT_EQ(sources, (std::set<int>{1, 2}));
  } else {
    tr->send(0, Tag::kControl, 0, 0, at::full({8}, g_ctx->rank(), at::kInt));
  }
  tr->barrier();
}

TEST(MpiTransportTest, NonContiguousTensorIsSentByValue) {
  auto tr = make_mpi_transport(*g_ctx, test_options());
  at::Tensor t = payload(g_ctx->rank(), 3, at::kFloat, {5, 7}).t();  // [7, 5], not contiguous
  auto op = tr->isend(g_ctx->ring_next(), Tag::kProbe, 0, 0, t);
  Received r = tr->recv(g_ctx->ring_prev(), Tag::kProbe);
  op->wait();
  EXPECT_TRUE(r.tensor.equal(payload(g_ctx->ring_prev(), 3, at::kFloat, {5, 7}).t()));
  tr->barrier();
}

TEST(MpiTransportTest, ReceiverRejectsWrongDtypeAndShapeThenStaysInStep) {
  auto tr = make_mpi_transport(*g_ctx, test_options());
  if (g_ctx->rank() == 1) {
    tr->send(0, Tag::kActivations, 0, 0, at::ones({1, 4096}, at::kBFloat16));  // wrong dtype
    tr->send(0, Tag::kActivations, 0, 1, at::ones({2, 4096}, at::kFloat));     // wrong shape
    tr->send(0, Tag::kActivations, 0, 5, at::ones({1, 4096}, at::kFloat));     // wrong seq_id
    tr->send(0, Tag::kActivations, 0, 2, at::full({1, 4096}, 3.0f));           // good
  } else if (g_ctx->rank() == 0) {
    Expectation want;
    want.dtype = DType::kF32;
    want.shape = {1, -1};
    try {
      tr->recv(1, Tag::kActivations, want);
      ADD_FAILURE() << "a bf16 message was accepted as f32";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("rank 0 received from rank 1: dtype bf16, expected f32"), std::string::npos)
          << e.what();
    }
    try {
      tr->recv(1, Tag::kActivations, want);
      ADD_FAILURE() << "a [2, 4096] message was accepted as [1, -1]";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("rank 0 received from rank 1: shape [2, 4096], expected [1, -1]"),
                std::string::npos) << e.what();
    }
    want.seq_id = 2;
    EXPECT_THROW(
        {
          try {
            tr->recv(1, Tag::kActivations, want);
          } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("seq_id 5, expected 2"), std::string::npos) << e.what();
            throw;
          }
        },
        Error);
    Received r = tr->recv(1, Tag::kActivations, want);  // the payloads were drained: still in step
    EXPECT_TRUE(r.tensor.equal(at::full({1, 4096}, 3.0f)));
  }
  tr->barrier();
}

TEST(MpiTransportTest, LivenessTimeoutNamesThePeerAndCancelledReceiveEatsNothing) {
  TransportOptions o = test_options();
  auto tr = make_mpi_transport(*g_ctx, o);
  if (g_ctx->rank() == 0) {
    auto rx = tr->irecv(1, Tag::kControl);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      rx->wait(std::chrono::milliseconds(300));
      ADD_FAILURE() << "a message that was never sent arrived";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("no control message from rank 1 (stage 1) for 0.3 s: it may be dead or stuck"),
                std::string::npos) << what;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_GE(s, 0.3);
    EXPECT_LT(s, 3.0);
    rx.reset();  // cancels the header receive
  }
  tr->barrier();
  // After the cancel, a message sent now must reach a new receive (not the cancelled one).
  if (g_ctx->rank() == 1) tr->send(0, Tag::kControl, 0, 42, at::full({1}, 42, at::kLong));
  if (g_ctx->rank() == 0) {
    Received r = tr->recv(1, Tag::kControl);
    EXPECT_EQ(r.header.seq_id, 42);
  }
  tr->barrier();
}

}  // namespace
}  // namespace glmpipe
