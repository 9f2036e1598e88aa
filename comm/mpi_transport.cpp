// MPI implementation of Transport. See transport.h for the matching rules and mpi_transport.h for
// the tag layout.
//
// Receive protocol: irecv posts an MPI_Irecv for the fixed-size header (from `peer` or
// MPI_ANY_SOURCE). Once the header is in, it is validated, a tensor is allocated, and the payload
// MPI_Irecv is posted from the rank that sent that header. Payload receives for one logical tag are
// posted in the order their header receives were posted (progress() walks a FIFO per tag and holds
// back a payload while an earlier, still header-less receive could match the same source), so that
// with several messages in flight the k-th payload from a rank lands with the k-th header.
// A header that fails validation still has its payload drained (so the stream stays in step) and the
// error is thrown from wait().
#include "comm/mpi_transport.h"

#include <mpi.h>

#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "comm/world.h"
#include "common/error.h"
#include "common/log.h"

namespace glmpipe {

namespace {
constexpr int kTagBase = 1000;
using Clock = std::chrono::steady_clock;
char g_empty_byte = 0;  // buffer for zero-byte payloads

std::string seconds_str(Duration d) {
  std::ostringstream os;
  os << std::chrono::duration<double>(d).count() << " s";
  return os.str();
}
}  // namespace

int header_mpi_tag(Tag tag) { return kTagBase + 2 * static_cast<int>(tag); }
int payload_mpi_tag(Tag tag) { return kTagBase + 2 * static_cast<int>(tag) + 1; }

namespace {

struct SendState {
  ActivationHeader header;
  at::Tensor host;  // contiguous host copy kept alive until MPI is done
  MPI_Request reqs[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
  int peer = -1;
  Tag tag = Tag::kProbe;
  bool done = false;
};

enum class Phase { kHeader, kHeaderIn, kPayload, kDone };

struct RecvState {
  int peer = kAnySource;
  Tag tag = Tag::kProbe;
  Expectation want;
  ActivationHeader header;
  MPI_Request hreq = MPI_REQUEST_NULL;
  MPI_Request preq = MPI_REQUEST_NULL;
  Phase phase = Phase::kHeader;
  int source = -1;
  at::Tensor into;      // caller-provided destination (may be undefined)
  at::Tensor host;      // where the payload lands (== result on CPU)
  at::Tensor result;
  std::vector<char> drain;  // payload sink after a failed validation
  std::string error;        // set when validation failed: thrown by wait()
  bool abandoned = false;
};

class MpiTransport;

class MpiPendingSend : public PendingOp {
 public:
  MpiPendingSend(MpiTransport* t, std::shared_ptr<SendState> s) : t_(t), s_(std::move(s)) {}
  ~MpiPendingSend() override;
  bool test() override;
  void wait(Duration timeout) override;
  using PendingOp::wait;

 private:
  MpiTransport* t_;
  std::shared_ptr<SendState> s_;
};

class MpiPendingRecv : public PendingRecv {
 public:
  MpiPendingRecv(MpiTransport* t, std::shared_ptr<RecvState> s) : t_(t), s_(std::move(s)) {}
  ~MpiPendingRecv() override;
  bool test() override;
  Received wait(Duration timeout) override;
  using PendingRecv::wait;

 private:
  MpiTransport* t_;
  std::shared_ptr<RecvState> s_;
  bool taken_ = false;
};

class MpiTransport : public Transport {
 public:
  MpiTransport(const RankContext& ctx, const TransportOptions& opt) : ctx_(ctx), opt_(opt) {
    GLMPIPE_CHECK(mpi_is_live()) << "MpiTransport: MPI is not initialized (call RankContext::from_mpi())";
    GLMPIPE_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_)) << "duplicating MPI_COMM_WORLD";
    GLMPIPE_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN)) << "setting the error handler";
    int world = 0;
    GLMPIPE_MPI_CHECK(MPI_Comm_size(comm_, &world)) << "reading the world size";
    GLMPIPE_CHECK(world == ctx_.world()) << "MpiTransport: RankContext world " << ctx_.world()
                                         << " != MPI world " << world;
    GLMPIPE_CHECK(opt_.timeout > Duration::zero()) << "MpiTransport: timeout must be positive";
  }

  ~MpiTransport() override {
    if (!mpi_is_live()) return;
    try {
      std::lock_guard<std::mutex> lock(mu_);
      drain_orphans(/*block=*/true);
      for (auto& q : recvs_)
        for (auto& s : q) cancel_request(&s->hreq), cancel_request(&s->preq);
      MPI_Comm_free(&comm_);
    } catch (const std::exception& e) {
      spdlog::warn("MpiTransport shutdown: {}", e.what());
    }
  }

  int rank() const override { return ctx_.rank(); }
  int world() const override { return ctx_.world(); }
  std::string name() const override { return "mpi"; }

  std::unique_ptr<PendingOp> isend(int peer, Tag tag, int64_t step, int64_t seq_id,
                                   const at::Tensor& t) override {
    check_peer(peer, false);
    auto s = std::make_shared<SendState>();
    s->peer = peer;
    s->tag = tag;
    at::Tensor c = t.contiguous();
#ifdef GLMPIPE_HAVE_CUDA
    if (c.is_cuda()) {
      at::Tensor pinned = at::empty(c.sizes(), c.options().device(at::kCPU).pinned_memory(true));
      pinned.copy_(c);  // synchronous D2H on the current stream
      c = pinned;
    }
#endif
    GLMPIPE_CHECK(c.device().is_cpu()) << "MpiTransport: cannot send a " << c.device() << " tensor to rank " << peer;
    s->header = make_header(tag, step, seq_id, c);
    GLMPIPE_CHECK(s->header.nbytes <= opt_.max_message_bytes && s->header.nbytes <= INT32_MAX)
        << "MpiTransport: message of " << s->header.nbytes << " bytes to rank " << peer << " exceeds the cap";
    s->host = c;
    void* buf = s->header.nbytes ? c.data_ptr() : &g_empty_byte;
    std::lock_guard<std::mutex> lock(mu_);
    GLMPIPE_MPI_CHECK(MPI_Isend(&s->header, sizeof(ActivationHeader), MPI_BYTE, peer, header_mpi_tag(tag),
                                comm_, &s->reqs[0]))
        << "rank " << rank() << " sending a " << tag_name(tag) << " header to rank " << peer;
    GLMPIPE_MPI_CHECK(MPI_Isend(buf, int(s->header.nbytes), MPI_BYTE, peer, payload_mpi_tag(tag), comm_,
                                &s->reqs[1]))
        << "rank " << rank() << " sending a " << tag_name(tag) << " payload to rank " << peer;
    drain_orphans(false);
    return std::make_unique<MpiPendingSend>(this, std::move(s));
  }

  std::unique_ptr<PendingRecv> irecv(int peer, Tag tag, const Expectation& want, at::Tensor into) override {
    check_peer(peer, true);
    auto s = std::make_shared<RecvState>();
    s->peer = peer;
    s->tag = tag;
    s->want = want;
    s->want.tag = tag;
    s->want.max_bytes = std::min(want.max_bytes, opt_.max_message_bytes);
    s->into = into;
    std::lock_guard<std::mutex> lock(mu_);
    GLMPIPE_MPI_CHECK(MPI_Irecv(&s->header, sizeof(ActivationHeader), MPI_BYTE,
                                peer == kAnySource ? MPI_ANY_SOURCE : peer, header_mpi_tag(tag), comm_, &s->hreq))
        << "rank " << rank() << " posting a " << tag_name(tag) << " receive from " << peer_name(peer);
    recvs_[static_cast<int>(tag)].push_back(s);
    return std::make_unique<MpiPendingRecv>(this, std::move(s));
  }

  void barrier() override {
    MPI_Request req;
    {
      std::lock_guard<std::mutex> lock(mu_);
      GLMPIPE_MPI_CHECK(MPI_Ibarrier(comm_, &req)) << "rank " << rank() << " entering a barrier";
    }
    poll_until([&] {
      std::lock_guard<std::mutex> lock(mu_);
      int flag = 0;
      GLMPIPE_MPI_CHECK(MPI_Test(&req, &flag, MPI_STATUS_IGNORE)) << "rank " << rank() << " in a barrier";
      return flag != 0;
    }, Duration::zero(), [&] { return "barrier: not all ranks arrived"; });
  }

  // ---- used by the pending ops ----
  bool test_send(SendState& s) {
    std::lock_guard<std::mutex> lock(mu_);
    return test_send_locked(s);
  }

  void wait_send(SendState& s, Duration timeout) {
    poll_until([&] { return test_send(s); }, timeout, [&] {
      return "rank " + std::to_string(s.peer) + " (stage " + std::to_string(s.peer) + ") has not taken our " +
             tag_name(s.tag) + " message (seq " + std::to_string(s.header.seq_id) + ")";
    });
  }

  void orphan(std::shared_ptr<SendState> s) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!test_send_locked(*s)) orphans_.push_back(std::move(s));
  }

  bool test_recv(RecvState& s) {
    std::lock_guard<std::mutex> lock(mu_);
    progress(s.tag);
    return s.phase == Phase::kDone;
  }

  Received wait_recv(RecvState& s, Duration timeout) {
    poll_until([&] { return test_recv(s); }, timeout, [&] {
      return "no " + std::string(tag_name(s.tag)) + " message from " + peer_name(s.peer) +
             (s.phase == Phase::kHeader ? "" : " (header in, payload missing)");
    });
    GLMPIPE_CHECK(s.error.empty()) << s.error;
    Received r;
    r.header = s.header;
    r.tensor = s.result;
    r.source = s.source;
    return r;
  }

  void abandon(std::shared_ptr<RecvState> s) {
    std::lock_guard<std::mutex> lock(mu_);
    if (s->phase == Phase::kDone) return;
    if (s->phase == Phase::kHeader) {
      // Try to cancel the header receive; if a message already matched it, keep draining it.
      MPI_Cancel(&s->hreq);
      MPI_Status st;
      MPI_Wait(&s->hreq, &st);
      int cancelled = 0;
      MPI_Test_cancelled(&st, &cancelled);
      if (cancelled) {
        auto& q = recvs_[static_cast<int>(s->tag)];
        for (auto it = q.begin(); it != q.end(); ++it)
          if (*it == s) { q.erase(it); break; }
        return;
      }
      s->source = st.MPI_SOURCE;
      s->phase = Phase::kHeaderIn;
    }
    s->abandoned = true;
    progress(s->tag);
  }

 private:
  std::string peer_name(int peer) const {
    if (peer == kAnySource) return "any rank";
    return "rank " + std::to_string(peer) + " (stage " + std::to_string(peer) + ")";
  }

  void check_peer(int peer, bool any_ok) const {
    GLMPIPE_CHECK((any_ok && peer == kAnySource) || (peer >= 0 && peer < ctx_.world()))
        << "rank " << rank() << ": peer rank " << peer << " outside [0, " << ctx_.world() << ")";
  }

  // Calls `done()` until true: spins for opt_.spin, then sleeps opt_.poll_interval between calls.
  // Throws after `timeout` (<= 0: opt_.timeout) of silence, with what() as the message.
  template <class Done, class What>
  void poll_until(Done done, Duration timeout, What what) {
    if (timeout <= Duration::zero()) timeout = opt_.timeout;
    const auto start = Clock::now();
    const auto spin_until = start + opt_.spin;
    const auto deadline = start + timeout;
    while (!done()) {
      const auto now = Clock::now();
      if (now >= deadline)
        GLMPIPE_FAIL() << "rank " << rank() << " (stage " << rank() << "): " << what() << " for "
                       << seconds_str(timeout) << ": it may be dead or stuck";
      if (now >= spin_until) std::this_thread::sleep_for(opt_.poll_interval);
    }
  }

  bool test_send_locked(SendState& s) {
    if (s.done) return true;
    int flag = 0;
    MPI_Status st[2];
    GLMPIPE_MPI_CHECK(MPI_Testall(2, s.reqs, &flag, st))
        << "rank " << rank() << " sending " << tag_name(s.tag) << " to rank " << s.peer;
    if (flag) s.done = true, s.host = at::Tensor();
    return s.done;
  }

  void drain_orphans(bool block) {
    for (auto it = orphans_.begin(); it != orphans_.end();) {
      bool done = test_send_locked(**it);
      if (!done && block) {
        const auto deadline = Clock::now() + opt_.timeout;
        while (!(done = test_send_locked(**it)) && Clock::now() < deadline)
          std::this_thread::sleep_for(opt_.poll_interval);
        if (!done) spdlog::warn("rank {}: dropping an unfinished send to rank {}", rank(), (*it)->peer);
      }
      it = done || block ? orphans_.erase(it) : it + 1;
    }
  }

  void cancel_request(MPI_Request* req) {
    if (*req == MPI_REQUEST_NULL) return;
    MPI_Cancel(req);
    MPI_Request_free(req);
  }

  // Advances the receives of one tag, in posting order (see the file comment).
  void progress(Tag tag) {
    auto& q = recvs_[static_cast<int>(tag)];
    for (size_t i = 0; i < q.size(); ++i) {
      RecvState& s = *q[i];
      if (s.phase == Phase::kHeader) {
        int flag = 0;
        MPI_Status st;
        GLMPIPE_MPI_CHECK(MPI_Test(&s.hreq, &flag, &st))
            << "rank " << rank() << " receiving a " << tag_name(tag) << " header from " << peer_name(s.peer);
        if (!flag) continue;
        int count = 0;
        MPI_Get_count(&st, MPI_BYTE, &count);
        s.source = st.MPI_SOURCE;
        s.phase = Phase::kHeaderIn;
        if (count != int(sizeof(ActivationHeader))) {
          s.error = "rank " + std::to_string(rank()) + " received from rank " + std::to_string(s.source) +
                    ": header of " + std::to_string(count) + " bytes, expected " +
                    std::to_string(sizeof(ActivationHeader));
          s.phase = Phase::kDone;  // cannot trust the stream: no payload to drain
          continue;
        }
      }
      if (s.phase == Phase::kHeaderIn) {
        bool blocked = false;
        for (size_t j = 0; j < i && !blocked; ++j)
          blocked = q[j]->phase == Phase::kHeader && (q[j]->peer == kAnySource || q[j]->peer == s.source);
        if (blocked) continue;
        post_payload(s);
      }
      if (s.phase == Phase::kPayload) {
        int flag = 0;
        MPI_Status st;
        GLMPIPE_MPI_CHECK(MPI_Test(&s.preq, &flag, &st))
            << "rank " << rank() << " receiving a " << tag_name(tag) << " payload from rank " << s.source
            << " " << to_string(s.header);
        if (!flag) continue;
        finish(s);
      }
    }
    // Completed states leave the FIFO (their PendingRecv, if any, still owns them).
    for (auto it = q.begin(); it != q.end();)
      it = (*it)->phase == Phase::kDone ? q.erase(it) : it + 1;
  }

  void post_payload(RecvState& s) {
    void* buf = &g_empty_byte;
    int count = 0;
    try {
      validate(s.header, s.want, rank(), s.source);
      const std::vector<int64_t> shape = header_shape(s.header);
      const at::ScalarType st = to_scalar_type(static_cast<DType>(s.header.dtype));
      if (s.into.defined()) {
        GLMPIPE_CHECK(s.into.is_contiguous() && s.into.scalar_type() == st && s.into.numel() * s.into.element_size() == s.header.nbytes)
            << "rank " << rank() << " received from rank " << s.source << ": " << to_string(s.header)
            << " does not fit the provided " << c10::toString(s.into.scalar_type()) << " tensor of shape "
            << shape_string(s.into.sizes().vec());
        s.result = s.into.view(shape);
      } else {
        s.result = at::empty(shape, at::TensorOptions().dtype(st));
      }
      s.host = s.result;
#ifdef GLMPIPE_HAVE_CUDA
      if (s.result.is_cuda()) s.host = at::empty(shape, at::TensorOptions().dtype(st).pinned_memory(true));
#endif
      if (s.header.nbytes) buf = s.host.data_ptr();
      count = int(s.header.nbytes);
    } catch (const Error& e) {
      s.error = e.what();
      s.result = at::Tensor();
      // Drain the payload so that the next message of this stream stays in step.
      if (s.header.nbytes > 0 && s.header.nbytes <= opt_.max_message_bytes) {
        s.drain.resize(size_t(s.header.nbytes));
        buf = s.drain.data();
        count = int(s.header.nbytes);
      } else if (s.header.nbytes != 0) {
        s.phase = Phase::kDone;  // absurd size: nothing sane to drain into
        return;
      }
    }
    GLMPIPE_MPI_CHECK(MPI_Irecv(buf, count, MPI_BYTE, s.source, payload_mpi_tag(s.tag), comm_, &s.preq))
        << "rank " << rank() << " posting a payload receive from rank " << s.source;
    s.phase = Phase::kPayload;
  }

  void finish(RecvState& s) {
#ifdef GLMPIPE_HAVE_CUDA
    if (s.error.empty() && s.result.is_cuda()) s.result.copy_(s.host);
#endif
    s.host = at::Tensor();
    s.drain.clear();
    s.drain.shrink_to_fit();
    s.into = at::Tensor();
    s.phase = Phase::kDone;
  }

  RankContext ctx_;
  TransportOptions opt_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::mutex mu_;
  std::deque<std::shared_ptr<RecvState>> recvs_[kNumTags];
  std::vector<std::shared_ptr<SendState>> orphans_;
};

MpiPendingSend::~MpiPendingSend() {
  try {
    if (!s_->done) t_->orphan(std::move(s_));
  } catch (const std::exception& e) {
    spdlog::warn("dropping a pending send: {}", e.what());
  }
}
bool MpiPendingSend::test() { return t_->test_send(*s_); }
void MpiPendingSend::wait(Duration timeout) { t_->wait_send(*s_, timeout); }

MpiPendingRecv::~MpiPendingRecv() {
  try {
    if (s_->phase != Phase::kDone) t_->abandon(std::move(s_));
  } catch (const std::exception& e) {
    spdlog::warn("dropping a pending receive: {}", e.what());
  }
}
bool MpiPendingRecv::test() { return t_->test_recv(*s_); }
Received MpiPendingRecv::wait(Duration timeout) { return t_->wait_recv(*s_, timeout); }

}  // namespace

std::unique_ptr<Transport> make_mpi_transport(const RankContext& ctx, const TransportOptions& options) {
  return std::make_unique<MpiTransport>(ctx, options);
}

}  // namespace glmpipe
