// The NCCL transport's state machine (see nccl_transport.h), independent of CUDA: it drives an
// NcclComm and a HeaderChannel, so tests run it against fakes.
#include "comm/nccl_transport.h"

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "common/log.h"

namespace glmpipe {

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

// A posted group: its ops share one completion marker.
struct Group {
  int64_t id = -1;
  bool done = false;
};

struct Op {
  int peer = -1;  // world rank
  std::shared_ptr<Group> group;  // set once its payload is posted
  bool done = false;
  bool dropped = false;  // the caller let go of it; the transport finishes it
  std::string error;     // validation error, thrown by wait()
};

struct SendOp : Op {
  int64_t header_id = -1;
  bool header_sent = false;
  at::Tensor source;  // kept alive until the payload is sent
  ActivationHeader header;
};

struct RecvOp : Op {
  Tag tag = Tag::kActivations;
  Expectation want;
  int64_t header_id = -1;
  bool header_in = false;
  ActivationHeader header;
  at::Tensor tensor;
};

class NcclTransportImpl;

class NcclPendingSend : public PendingOp {
 public:
  NcclPendingSend(NcclTransportImpl* t, std::shared_ptr<SendOp> op) : t_(t), op_(std::move(op)) {}
  ~NcclPendingSend() override;
  bool test() override;
  void wait(Duration timeout) override;
  using PendingOp::wait;

 private:
  NcclTransportImpl* t_;
  std::shared_ptr<SendOp> op_;
};

class NcclPendingRecv : public PendingRecv {
 public:
  NcclPendingRecv(NcclTransportImpl* t, std::shared_ptr<RecvOp> op) : t_(t), op_(std::move(op)) {}
  ~NcclPendingRecv() override;
  bool test() override;
  Received wait(Duration timeout) override;
  using PendingRecv::wait;

 private:
  NcclTransportImpl* t_;
  std::shared_ptr<RecvOp> op_;
};

class NcclTransportImpl : public Transport {
 public:
  NcclTransportImpl(int rank, int world, std::vector<int> members, std::unique_ptr<NcclComm> comm,
                    std::unique_ptr<HeaderChannel> headers, const TransportOptions& opt)
      : rank_(rank), world_(world), members_(std::move(members)), comm_(std::move(comm)),
        headers_(std::move(headers)), opt_(opt) {
    GLMPIPE_CHECK(comm_ && headers_) << "NcclTransport: rank " << rank_ << ": missing communicator or header channel";
    GLMPIPE_CHECK(std::find(members_.begin(), members_.end(), rank_) != members_.end())
        << "NcclTransport: rank " << rank_ << " is not a member of its NCCL communicator (" << members_string() << ")";
    wait_ready();
  }

  ~NcclTransportImpl() override {
    // Outstanding sends (dropped by their callers) finish within the timeout, else the communicator
    // is aborted so that the destructor of the real communicator cannot hang.
    try {
      std::unique_lock<std::mutex> lock(mu_);
      const auto start = Clock::now();
      while (aborted_.empty() && !sends_.empty()) {
        progress_locked();
        if (Clock::now() - start >= opt_.timeout) {
          abort_locked("unfinished sends at shutdown");
          break;
        }
        lock.unlock();
        std::this_thread::sleep_for(opt_.poll_interval);
        lock.lock();
      }
    } catch (const std::exception& e) {
      spdlog::warn("rank {}: closing the NCCL transport: {}", rank_, e.what());
    }
  }

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string name() const override { return "nccl"; }

  void barrier() override {
    std::unique_lock<std::mutex> lock(mu_);
    while (!sends_.empty()) wait_locked(lock, [&] { return sends_.empty(); }, opt_.timeout, -1, "finishing sends before a barrier");
    headers_->barrier();
  }

  std::unique_ptr<PendingOp> isend(int peer, Tag tag, int64_t step, int64_t seq_id, const at::Tensor& t) override {
    std::lock_guard<std::mutex> lock(mu_);
    check_usable_locked();
    auto op = std::make_shared<SendOp>();
    op->peer = peer;
    const int cpeer = comm_rank(peer);
    op->source = comm_->send_source(t);
    op->header = make_header(tag, step, seq_id, op->source);
    GLMPIPE_CHECK(op->header.nbytes <= opt_.max_message_bytes)
        << "NcclTransport: rank " << rank_ << " sending " << to_string(op->header) << " to rank " << peer
        << ": more than the " << opt_.max_message_bytes << "-byte cap";
    op->header_id = headers_->post_send(cpeer, op->header);
    queued_.push_back({P2POp{P2POp::Kind::kSend, cpeer, op->source.data_ptr(), op->header.nbytes}, op});
    sends_.push_back(op);
    progress_locked();
    return std::make_unique<NcclPendingSend>(this, op);
  }

  std::unique_ptr<PendingRecv> irecv(int peer, Tag tag, const Expectation& want, at::Tensor into) override {
    std::lock_guard<std::mutex> lock(mu_);
    check_usable_locked();
    GLMPIPE_CHECK(peer != kAnySource) << "NcclTransport: rank " << rank_ << ": NCCL receives need a specific source rank";
    GLMPIPE_CHECK(!into.defined()) << "NcclTransport: receiving into a provided tensor is not supported";
    auto op = std::make_shared<RecvOp>();
    op->peer = peer;
    op->tag = tag;
    op->want = want;
    op->want.tag = tag;
    op->header_id = headers_->post_recv(comm_rank(peer));
    recvs_[peer].push_back(op);
    progress_locked();
    return std::make_unique<NcclPendingRecv>(this, op);
  }

  // ---- used by the pending ops ----
  bool test_op(const std::shared_ptr<Op>& op) {
    std::lock_guard<std::mutex> lock(mu_);
    if (op->done) return true;
    check_usable_locked();
    progress_locked();
    return op->done;
  }

  void wait_op(const std::shared_ptr<Op>& op, Duration timeout, const char* what) {
    std::unique_lock<std::mutex> lock(mu_);
    if (timeout <= Duration::zero()) timeout = opt_.timeout;
    wait_locked(lock, [&] { return op->done; }, timeout, op->peer, what);
  }

  Received take(RecvOp& op) {
    if (!op.error.empty()) GLMPIPE_FAIL() << op.error;
    Received r;
    r.header = op.header;
    r.tensor = op.tensor;
    r.source = op.peer;
    return r;
  }

  void drop(const std::shared_ptr<RecvOp>& op) {
    std::lock_guard<std::mutex> lock(mu_);
    if (op->done || !aborted_.empty()) return erase_recv(op);
    if (!op->header_in && headers_->cancel(op->header_id)) return erase_recv(op);
    op->dropped = true;  // its header is (or will be) in: the payload is drained to keep NCCL in step
  }

  void drop(const std::shared_ptr<SendOp>& op) {
    std::lock_guard<std::mutex> lock(mu_);
    op->dropped = true;  // stays in sends_ (and keeps its source alive) until complete
  }

 private:
  std::string members_string() const {
    std::ostringstream os;
    os << "world ranks";
    for (int m : members_) os << " " << m;
    return os.str();
  }

  int comm_rank(int world_rank) const {
    auto it = std::find(members_.begin(), members_.end(), world_rank);
    GLMPIPE_CHECK(it != members_.end()) << "NcclTransport: rank " << rank_ << ": rank " << world_rank
                                        << " is not in the NCCL communicator (" << members_string()
                                        << "); its edge travels over MPI";
    return static_cast<int>(it - members_.begin());
  }

  void check_usable_locked() const {
    GLMPIPE_CHECK(aborted_.empty()) << "NcclTransport: rank " << rank_ << ": the NCCL communicator was aborted ("
                                    << aborted_ << ")";
  }

  // Waits for the non-blocking init (and any launch) to finish.
  void wait_ready() {
    std::unique_lock<std::mutex> lock(mu_);
    wait_locked(lock, [&] {
      std::string err;
      return comm_->state(&err) == NcclComm::State::kReady;
    }, opt_.timeout, -1, "the NCCL communicator's initialization");
  }

  // Polls `done` under the lock (progress first), sleeping between polls without the lock; on an
  // NCCL error or after `timeout` aborts the communicator and throws.
  template <class Done>
  void wait_locked(std::unique_lock<std::mutex>& lock, Done done, Duration timeout, int peer, const char* what) {
    const auto start = Clock::now();
    for (;;) {
      check_usable_locked();
      progress_locked();
      if (done()) return;
      const auto waited = Clock::now() - start;
      if (waited >= timeout) {
        std::ostringstream os;
        os << "rank " << rank_ << ": " << what;
        if (peer >= 0) os << " with rank " << peer << " (stage " << peer << ")";
        os << " did not finish in " << seconds(timeout) << " s: the peer may be dead or stuck";
        abort_locked(os.str());
        GLMPIPE_FAIL() << os.str() << "; NCCL communicator aborted";
      }
      lock.unlock();
      if (waited >= opt_.spin) std::this_thread::sleep_for(opt_.poll_interval);
      else std::this_thread::yield();
      lock.lock();
    }
  }

  // Headers in -> payload receives queued (per peer in posting order); queued ops posted as one
  // group when the communicator is ready; completions collected.
  void progress_locked() {
    std::string err;
    const NcclComm::State st = comm_->state(&err);
    if (st == NcclComm::State::kFailed) {
      abort_locked("NCCL error: " + err);
      GLMPIPE_FAIL() << "rank " << rank_ << ": NCCL error: " << err << "; NCCL communicator aborted";
    }
    for (auto& [peer, fifo] : recvs_) {
      for (auto& op : fifo) {
        if (op->header_in) continue;
        if (!headers_->test(op->header_id, &op->header)) break;  // later ones wait for this one
        op->header_in = true;
        std::vector<int64_t> shape;
        at::ScalarType dtype = at::kByte;
        try {
          validate(op->header, op->want, rank_, peer);
          shape = header_shape(op->header);
          dtype = to_scalar_type(static_cast<DType>(op->header.dtype));
        } catch (const Error& e) {  // drain the payload as bytes: the stream stays in step
          op->error = e.what();
          shape = {std::max<int64_t>(op->header.nbytes, 0)};
        }
        op->tensor = comm_->empty(shape, dtype);
        queued_.push_back({P2POp{P2POp::Kind::kRecv, comm_rank(peer), op->tensor.data_ptr(), op->header.nbytes}, op});
      }
    }
    if (st == NcclComm::State::kReady && !queued_.empty()) {
      std::vector<P2POp> ops;
      for (auto& q : queued_) ops.push_back(q.first);
      auto g = std::make_shared<Group>();
      g->id = comm_->post_group(ops);
      for (auto& q : queued_) q.second->group = g;
      queued_.clear();
    }
    collect_locked();
  }

  bool group_done(const std::shared_ptr<Group>& g) {
    if (!g) return false;
    if (!g->done && comm_->finished(g->id)) {
      g->done = true;
      comm_->release(g->id);
    }
    return g->done;
  }

  void collect_locked() {
    for (auto it = sends_.begin(); it != sends_.end();) {
      SendOp& s = **it;
      if (!s.header_sent) s.header_sent = headers_->test(s.header_id, nullptr);
      if (s.header_sent && group_done(s.group)) {
        s.done = true;
        s.source = at::Tensor();
        it = sends_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [peer, fifo] : recvs_) {
      for (auto& op : fifo)
        if (!op->done && group_done(op->group)) op->done = true;
      fifo.erase(std::remove_if(fifo.begin(), fifo.end(), [](const auto& op) { return op->done && op->dropped; }),
                 fifo.end());
      // Completed receives leave the FIFO once the caller has taken them (erase_recv) or dropped them.
    }
  }

  void erase_recv(const std::shared_ptr<RecvOp>& op) {
    auto& fifo = recvs_[op->peer];
    fifo.erase(std::remove(fifo.begin(), fifo.end(), op), fifo.end());
  }

  void abort_locked(const std::string& why) {
    if (!aborted_.empty()) return;
    aborted_ = why.empty() ? "aborted" : why;
    spdlog::error("rank {}: aborting the NCCL communicator: {}", rank_, aborted_);
    comm_->abort();
  }

  friend class NcclPendingRecv;

  int rank_, world_;
  std::vector<int> members_;
  std::unique_ptr<NcclComm> comm_;
  std::unique_ptr<HeaderChannel> headers_;
  TransportOptions opt_;
  std::mutex mu_;  // one lock per communicator
  std::vector<std::pair<P2POp, std::shared_ptr<Op>>> queued_;  // ready, not yet posted (issue order)
  std::vector<std::shared_ptr<SendOp>> sends_;                 // posted, not complete
  std::map<int, std::deque<std::shared_ptr<RecvOp>>> recvs_;   // per world peer, in posting order
  std::string aborted_;  // non-empty once aborted: why
};

NcclPendingSend::~NcclPendingSend() { t_->drop(op_); }
bool NcclPendingSend::test() { return t_->test_op(op_); }
void NcclPendingSend::wait(Duration timeout) { t_->wait_op(op_, timeout, "an NCCL send"); }

NcclPendingRecv::~NcclPendingRecv() { t_->drop(op_); }
bool NcclPendingRecv::test() { return t_->test_op(op_); }
Received NcclPendingRecv::wait(Duration timeout) {
  t_->wait_op(op_, timeout, "an NCCL receive");
  return t_->take(*op_);
}

}  // namespace

std::unique_ptr<Transport> make_nccl_transport_over(int rank, int world, std::vector<int> members,
                                                    std::unique_ptr<NcclComm> comm,
                                                    std::unique_ptr<HeaderChannel> headers,
                                                    const TransportOptions& options) {
  return std::make_unique<NcclTransportImpl>(rank, world, std::move(members), std::move(comm), std::move(headers),
                                             options);
}

}  // namespace glmpipe
