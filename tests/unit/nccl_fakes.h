// In-process fakes of NcclComm and HeaderChannel (comm/nccl_comm.h) for the NCCL transport's state
// machine tests: several "ranks" in one thread share a FakeWire. Payloads are host tensors; sends
// and receives of a pair match in issue order, like NCCL. With `hold`, matched transfers stay
// incomplete until release(), so a test can watch test() report completion.
#pragma once

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <set>

#include "comm/nccl_comm.h"
#include "common/error.h"

namespace glmpipe::fake {

struct FakeWire {
  struct Posted {
    int owner = -1;
    int64_t group = -1;
    void* data = nullptr;
    int64_t bytes = 0;
  };
  using Pair = std::pair<int, int>;  // (src, dst)
  std::map<Pair, std::deque<ActivationHeader>> headers;
  std::map<Pair, std::deque<Posted>> sends, recvs;
  std::map<std::pair<int, int64_t>, int> open;  // (rank, group) -> ops not complete
  std::vector<std::pair<Posted, Posted>> held;
  bool hold = false;
  int aborts = 0;
  std::string mismatch;

  void deliver(const Posted& s, const Posted& r) {
    if (s.bytes != r.bytes) mismatch = "send of " + std::to_string(s.bytes) + " bytes met a receive of " + std::to_string(r.bytes);
    else if (s.bytes > 0) std::memcpy(r.data, s.data, s.bytes);
    --open[{s.owner, s.group}];
    --open[{r.owner, r.group}];
  }
  void match() {
    for (auto& [pair, q] : sends) {
      auto& rq = recvs[pair];
      while (!q.empty() && !rq.empty()) {
        if (hold) held.emplace_back(q.front(), rq.front());
        else deliver(q.front(), rq.front());
        q.pop_front();
        rq.pop_front();
      }
    }
  }
  void release() {
    for (auto& [s, r] : held) deliver(s, r);
    held.clear();
  }
};

class FakeComm : public NcclComm {
 public:
  FakeComm(int rank, FakeWire* wire) : rank_(rank), wire_(wire) {}
  int init_polls = 0;   // state() calls that answer kInProgress first; < 0: forever
  std::string failure;  // non-empty: state() answers kFailed
  std::vector<std::vector<P2POp::Kind>> groups;  // what each post_group held
  bool aborted = false;

  State state(std::string* error) override {
    if (!failure.empty()) {
      if (error) *error = failure;
      return State::kFailed;
    }
    if (init_polls < 0) return State::kInProgress;
    if (init_polls > 0) {
      --init_polls;
      return State::kInProgress;
    }
    return State::kReady;
  }
  int64_t post_group(const std::vector<P2POp>& ops) override {
    GLMPIPE_CHECK(!aborted) << "fake: post_group after abort";
    const int64_t id = next_++;
    std::vector<P2POp::Kind> kinds;
    wire_->open[{rank_, id}] = static_cast<int>(ops.size());
    for (const P2POp& op : ops) {
      kinds.push_back(op.kind);
      FakeWire::Posted p{rank_, id, op.data, op.bytes};
      if (op.kind == P2POp::Kind::kSend) wire_->sends[{rank_, op.peer}].push_back(p);
      else wire_->recvs[{op.peer, rank_}].push_back(p);
    }
    groups.push_back(kinds);
    wire_->match();
    return id;
  }
  bool finished(int64_t group) override { return wire_->open.at({rank_, group}) == 0; }
  void release(int64_t group) override { wire_->open.erase({rank_, group}); }
  void abort() override {
    aborted = true;
    ++wire_->aborts;
  }
  at::Tensor send_source(const at::Tensor& t) override { return t.contiguous(); }
  at::Tensor empty(const std::vector<int64_t>& shape, at::ScalarType dtype) override {
    return at::empty(shape, at::TensorOptions().dtype(dtype));
  }

 private:
  int rank_;
  FakeWire* wire_;
  int64_t next_ = 0;
};

class FakeHeaders : public HeaderChannel {
 public:
  FakeHeaders(int rank, FakeWire* wire) : rank_(rank), wire_(wire) {}
  int64_t post_send(int peer, const ActivationHeader& h) override {
    wire_->headers[{rank_, peer}].push_back(h);
    const int64_t id = next_++;
    sent_.insert(id);  // eager: complete at once
    return id;
  }
  int64_t post_recv(int peer) override {
    const int64_t id = next_++;
    pending_[peer].push_back(id);
    return id;
  }
  bool test(int64_t id, ActivationHeader* out) override {
    if (sent_.erase(id)) return true;
    match();
    auto it = matched_.find(id);
    if (it == matched_.end()) return false;
    if (out) *out = it->second;
    matched_.erase(it);
    return true;
  }
  bool cancel(int64_t id) override {
    match();
    if (matched_.count(id)) return false;
    for (auto& [peer, q] : pending_) q.erase(std::remove(q.begin(), q.end(), id), q.end());
    return true;
  }
  void barrier() override { ++barriers; }
  int barriers = 0;

 private:
  void match() {  // MPI: receives match in posting order
    for (auto& [peer, q] : pending_) {
      auto& hq = wire_->headers[{peer, rank_}];
      while (!q.empty() && !hq.empty()) {
        matched_[q.front()] = hq.front();
        q.pop_front();
        hq.pop_front();
      }
    }
  }
  int rank_;
  FakeWire* wire_;
  int64_t next_ = 0;
  std::set<int64_t> sent_;
  std::map<int, std::deque<int64_t>> pending_;
  std::map<int64_t, ActivationHeader> matched_;
};

}  // namespace glmpipe::fake
