// The NCCL transport's state machine (comm/nccl_transport.cpp) against fake communicators and header
// channels (nccl_fakes.h): completion reported by test(), grouping of what is ready, receives posted
// in header order, abort on timeout / asynchronous error / init that never finishes. No GPU, no MPI.
#include <gtest/gtest.h>

#include <chrono>

#include "comm/nccl_transport.h"
#include "common/error.h"
#include "tests/unit/nccl_fakes.h"

namespace glmpipe {
namespace {

using fake::FakeComm;
using fake::FakeHeaders;
using fake::FakeWire;
using Kind = P2POp::Kind;

TransportOptions quick() {
  TransportOptions o;
  o.timeout = std::chrono::milliseconds(200);
  o.spin = std::chrono::microseconds(0);
  o.poll_interval = std::chrono::microseconds(100);
  return o;
}

// Ranks 0..n-1 of a world of `world`, all members of the communicator unless `members` says.
struct Ranks {
  FakeWire wire;
  std::vector<FakeComm*> comms;
  std::vector<std::unique_ptr<Transport>> t;
  explicit Ranks(int n, std::vector<int> members = {}) {
    if (members.empty())
      for (int r = 0; r < n; ++r) members.push_back(r);
    for (int r : members) {
      auto c = std::make_unique<FakeComm>(static_cast<int>(comms.size()), &wire);
      comms.push_back(c.get());
      t.push_back(make_nccl_transport_over(r, n, members, std::move(c),
                                           std::make_unique<FakeHeaders>(static_cast<int>(t.size()), &wire), quick()));
    }
  }
};

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(NcclTransportState, TestReportsCompletionOnlyOnceTheTransferIsDone) {
  Ranks w(2);
  w.wire.hold = true;  // matched transfers stay in flight until release()
  auto x = at::arange(12, at::kFloat).reshape({3, 4});
  auto send = w.t[0]->isend(1, Tag::kActivations, 4, 7, x);
  auto rx = w.t[1]->irecv(0, Tag::kActivations);
  EXPECT_FALSE(rx->test());  // header in, payload posted, not complete
  EXPECT_FALSE(send->test());
  w.wire.release();
  EXPECT_TRUE(rx->test());
  EXPECT_TRUE(send->test());
  Received r = rx->wait();
  EXPECT_TRUE(r.tensor.equal(x));
  EXPECT_EQ(r.header.step, 4);
  EXPECT_EQ(r.header.seq_id, 7);
  EXPECT_EQ(r.source, 0);
  EXPECT_TRUE(w.wire.mismatch.empty()) << w.wire.mismatch;
}

TEST(NcclTransportState, WhatIsReadyTogetherIsPostedAsOneGroup) {
  // Both ranks send to and receive from each other: ungrouped on one stream, NCCL would deadlock.
  Ranks w(2);
  auto rx1 = w.t[1]->irecv(0, Tag::kActivations);  // no header yet: nothing posted
  EXPECT_TRUE(w.comms[1]->groups.empty());
  auto s0 = w.t[0]->isend(1, Tag::kActivations, 0, 1, at::full({8}, 1.0f));
  auto s1 = w.t[1]->isend(0, Tag::kActivations, 0, 2, at::full({8}, 2.0f));
  ASSERT_EQ(w.comms[1]->groups.size(), 1u);
  const auto& g = w.comms[1]->groups.back();
  ASSERT_EQ(g.size(), 2u);  // its send and the receive whose header had arrived
  EXPECT_EQ(std::count(g.begin(), g.end(), Kind::kSend), 1);
  EXPECT_EQ(std::count(g.begin(), g.end(), Kind::kRecv), 1);
  auto rx0 = w.t[0]->irecv(1, Tag::kActivations);
  EXPECT_TRUE(rx0->wait().tensor.equal(at::full({8}, 2.0f)));
  EXPECT_TRUE(rx1->wait().tensor.equal(at::full({8}, 1.0f)));
  s0->wait();
  s1->wait();
}

TEST(NcclTransportState, ReceivesArePostedInTheOrderTheirHeadersArrive) {
  Ranks w(2);
  auto a = w.t[1]->irecv(0, Tag::kActivations);
  auto b = w.t[1]->irecv(0, Tag::kActivations);
  auto s1 = w.t[0]->isend(1, Tag::kActivations, 0, 1, at::arange(6, at::kFloat));
  auto s2 = w.t[0]->isend(1, Tag::kActivations, 0, 2, at::arange(10, at::kLong));
  EXPECT_TRUE(b->test());  // testing the later one first still posts `a` first
  Received rb = b->wait(), ra = a->wait();
  EXPECT_EQ(ra.header.seq_id, 1);
  EXPECT_TRUE(ra.tensor.equal(at::arange(6, at::kFloat)));
  EXPECT_EQ(rb.header.seq_id, 2);
  EXPECT_TRUE(rb.tensor.equal(at::arange(10, at::kLong)));
  EXPECT_TRUE(w.wire.mismatch.empty()) << w.wire.mismatch;
}

TEST(NcclTransportState, WaitPastTheTimeoutAbortsTheCommunicatorAndNamesThePeer) {
  Ranks w(2);
  auto rx = w.t[1]->irecv(0, Tag::kActivations);  // rank 0 never sends
  const auto t0 = std::chrono::steady_clock::now();
  const std::string msg = message_of([&] { rx->wait(std::chrono::milliseconds(100)); });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(msg.find("rank 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("aborted"), std::string::npos) << msg;
  EXPECT_GE(s, 0.09);
  EXPECT_LT(s, 5.0);
  EXPECT_TRUE(w.comms[1]->aborted);
  EXPECT_FALSE(w.comms[0]->aborted);
  EXPECT_NE(message_of([&] { w.t[1]->isend(0, Tag::kActivations, 0, 0, at::ones({2})); }).find("aborted"),
            std::string::npos);
}

TEST(NcclTransportState, AnAsynchronousNcclErrorAbortsAtTheNextTest) {
  Ranks w(2);
  auto rx = w.t[1]->irecv(0, Tag::kActivations);
  EXPECT_FALSE(rx->test());
  w.comms[1]->failure = "remote process exited or there was a network error";
  const std::string msg = message_of([&] { rx->test(); });
  EXPECT_NE(msg.find("remote process exited"), std::string::npos) << msg;
  EXPECT_TRUE(w.comms[1]->aborted);
}

TEST(NcclTransportState, InitThatNeverFinishesIsAbortedAfterTheTimeout) {
  FakeWire wire;
  auto c = std::make_unique<FakeComm>(0, &wire);
  c->init_polls = -1;  // a member that never joins
  const auto t0 = std::chrono::steady_clock::now();
  const std::string msg = message_of([&] {
    make_nccl_transport_over(0, 2, {0, 1}, std::move(c), std::make_unique<FakeHeaders>(0, &wire), quick());
  });
  EXPECT_NE(msg.find("initialization"), std::string::npos) << msg;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  EXPECT_EQ(wire.aborts, 1);
}

TEST(NcclTransportState, InitInProgressIsWaitedFor) {
  FakeWire wire;
  auto c = std::make_unique<FakeComm>(0, &wire);
  c->init_polls = 5;
  auto t = make_nccl_transport_over(0, 1, {0}, std::move(c), std::make_unique<FakeHeaders>(0, &wire), quick());
  EXPECT_EQ(t->name(), "nccl");
  EXPECT_EQ(wire.aborts, 0);
}

TEST(NcclTransportState, AHeaderThatFailsValidationIsDrainedAndTheStreamStaysInStep) {
  Ranks w(2);
  auto s1 = w.t[0]->isend(1, Tag::kActivations, 0, 1, at::zeros({2, 3}));
  auto s2 = w.t[0]->isend(1, Tag::kActivations, 0, 2, at::ones({2, 4}));
  Expectation want;
  want.shape = {-1, 4};
  want.ndim = 2;
  const std::string msg = message_of([&] { w.t[1]->irecv(0, Tag::kActivations, want)->wait(); });
  EXPECT_FALSE(msg.empty());
  Received r = w.t[1]->irecv(0, Tag::kActivations, want)->wait();
  EXPECT_EQ(r.header.seq_id, 2);
  EXPECT_TRUE(r.tensor.equal(at::ones({2, 4})));
  EXPECT_TRUE(w.wire.mismatch.empty()) << w.wire.mismatch;
}

TEST(NcclTransportState, CommunicatorRanksAreTheMembersNotTheWorld) {
  // World of 4, communicator of world ranks 1 and 3 (comm ranks 0 and 1).
  Ranks w(4, {1, 3});
  auto s = w.t[0]->isend(3, Tag::kActivations, 0, 9, at::full({3}, 5.0f));
  Received r = w.t[1]->irecv(1, Tag::kActivations)->wait();
  EXPECT_EQ(r.source, 1);
  EXPECT_TRUE(r.tensor.equal(at::full({3}, 5.0f)));
  const std::string msg = message_of([&] { w.t[0]->isend(2, Tag::kActivations, 0, 0, at::ones({1})); });
  EXPECT_NE(msg.find("not in the NCCL communicator"), std::string::npos) << msg;
}

TEST(NcclTransportState, ADroppedReceiveBeforeItsHeaderIsCancelled) {
  Ranks w(2);
  w.t[1]->irecv(0, Tag::kActivations).reset();  // dropped at once
  auto s = w.t[0]->isend(1, Tag::kActivations, 0, 3, at::full({4}, 3.0f));
  Received r = w.t[1]->irecv(0, Tag::kActivations)->wait();
  EXPECT_EQ(r.header.seq_id, 3);
}

}  // namespace
}  // namespace glmpipe
