// NCCL implementation of the transport (built only with the CUDA toolkit). See nccl_transport.h.
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <thread>

#include "comm/mpi_transport.h"
#include "comm/nccl_transport.h"
#include "comm/world.h"
#include "common/error.h"
#include "common/log.h"

#define GLMPIPE_CUDA_CHECK(call)                                                                  \
  if (cudaError_t glmpipe_cuda_rc_ = (call); glmpipe_cuda_rc_ == cudaSuccess) {                   \
  } else                                                                                          \
    ::glmpipe::detail::ErrorBuilder(__FILE__, __LINE__, nullptr).stream()                         \
        << #call << " failed: " << cudaGetErrorString(glmpipe_cuda_rc_) << ": "

#define GLMPIPE_NCCL_CHECK(call)                                                                  \
  if (ncclResult_t glmpipe_nccl_rc_ = (call); glmpipe_nccl_rc_ == ncclSuccess) {                  \
  } else                                                                                          \
    ::glmpipe::detail::ErrorBuilder(__FILE__, __LINE__, nullptr).stream()                         \
        << #call << " failed: " << ncclGetErrorString(glmpipe_nccl_rc_) << ": "

namespace glmpipe {

bool nccl_transport_built() { return true; }

namespace {

using Clock = std::chrono::steady_clock;
// All headers of a pair share one MPI tag so that they arrive in NCCL issue order (see the header).
const int kNcclHeaderTag = header_mpi_tag(Tag::kActivations) + 100;

class NcclTransportImpl;

struct NcclSendState {
  ActivationHeader header;
  MPI_Request hreq = MPI_REQUEST_NULL;
  cudaEvent_t done_event = nullptr;
  void* staging = nullptr;  // device copy of a host tensor, freed when done
  at::Tensor keep;          // source tensor kept alive until the copy is done
  int peer = -1;
  bool done = false;
};

class NcclPendingSend : public PendingOp {
 public:
  NcclPendingSend(NcclTransportImpl* t, std::unique_ptr<NcclSendState> s) : t_(t), s_(std::move(s)) {}
  ~NcclPendingSend() override;
  bool test() override;
  void wait(Duration timeout) override;
  using PendingOp::wait;

 private:
  NcclTransportImpl* t_;
  std::unique_ptr<NcclSendState> s_;
};

// Receives are completed at wait(): the header arrives over MPI (polled, with the liveness timeout),
// then the payload is received with NCCL into a device buffer and copied to a host tensor.
class NcclPendingRecv : public PendingRecv {
 public:
  NcclPendingRecv(NcclTransportImpl* t, int peer, Tag tag, Expectation want)
      : t_(t), peer_(peer), tag_(tag), want_(std::move(want)) {}
  bool test() override { return false; }
  Received wait(Duration timeout) override;
  using PendingRecv::wait;

 private:
  NcclTransportImpl* t_;
  int peer_;
  Tag tag_;
  Expectation want_;
};

class NcclTransportImpl : public NcclTransport {
 public:
  NcclTransportImpl(const RankContext& ctx, const NcclOptions& opt) : ctx_(ctx), opt_(opt) {
    GLMPIPE_CHECK(mpi_is_live()) << "NcclTransport: MPI is not initialized (call RankContext::from_mpi())";
    int count = 0;
    GLMPIPE_CUDA_CHECK(cudaGetDeviceCount(&count)) << "rank " << ctx_.rank() << ": counting CUDA devices";
    device_ = opt.device >= 0 ? opt.device : ctx_.local_rank();
    GLMPIPE_CHECK(device_ < count) << "rank " << ctx_.rank() << ": CUDA device " << device_ << " requested, "
                                   << count << " present";
    GLMPIPE_CUDA_CHECK(cudaSetDevice(device_)) << "rank " << ctx_.rank();
    GLMPIPE_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &mpi_)) << "NcclTransport: duplicating MPI_COMM_WORLD";
    GLMPIPE_MPI_CHECK(MPI_Comm_set_errhandler(mpi_, MPI_ERRORS_RETURN)) << "NcclTransport";
    ncclUniqueId id;
    if (ctx_.rank() == 0) GLMPIPE_NCCL_CHECK(ncclGetUniqueId(&id)) << "rank 0 creating the NCCL id";
    GLMPIPE_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, mpi_)) << "broadcasting the NCCL id";
    GLMPIPE_NCCL_CHECK(ncclCommInitRank(&nccl_, ctx_.world(), id, ctx_.rank()))
        << "rank " << ctx_.rank() << " joining the NCCL communicator on device " << device_;
    GLMPIPE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)) << "rank " << ctx_.rank();
  }

  ~NcclTransportImpl() override {
    if (nccl_) {
      if (aborted_) ncclCommAbort(nccl_);
      else ncclCommDestroy(nccl_);
    }
    if (stream_) cudaStreamDestroy(stream_);
    if (mpi_ != MPI_COMM_NULL && mpi_is_live()) MPI_Comm_free(&mpi_);
  }

  int rank() const override { return ctx_.rank(); }
  int world() const override { return ctx_.world(); }
  int device() const override { return device_; }
  std::string name() const override { return "nccl"; }

  void barrier() override {
    std::lock_guard<std::mutex> lock(mu_);
    GLMPIPE_CUDA_CHECK(cudaStreamSynchronize(stream_)) << "rank " << rank() << " in a barrier";
    GLMPIPE_MPI_CHECK(MPI_Barrier(mpi_)) << "rank " << rank() << " in a barrier";
  }

  std::unique_ptr<PendingOp> isend(int peer, Tag tag, int64_t step, int64_t seq_id, const at::Tensor& t) override {
    at::Tensor c = t.contiguous();
    ActivationHeader h = make_header(tag, step, seq_id, c);
    if (c.device().is_cuda())
      return isend_device(peer, tag, step, seq_id, static_cast<DType>(h.dtype), c.sizes().vec(), c.data_ptr());
    // Host tensor: stage through a device buffer on our stream.
    void* staging = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      GLMPIPE_CUDA_CHECK(cudaMallocAsync(&staging, std::max<int64_t>(h.nbytes, 1), stream_)) << "staging a send";
      GLMPIPE_CUDA_CHECK(cudaMemcpyAsync(staging, c.data_ptr(), h.nbytes, cudaMemcpyHostToDevice, stream_))
          << "staging a send to rank " << peer;
    }
    auto op = post_send(peer, h, staging);
    op->staging = staging;
    op->keep = c;
    return std::make_unique<NcclPendingSend>(this, std::move(op));
  }

  std::unique_ptr<PendingOp> isend_device(int peer, Tag tag, int64_t step, int64_t seq_id, DType dtype,
                                          const std::vector<int64_t>& shape, const void* dev) override {
    return std::make_unique<NcclPendingSend>(this, post_send(peer, make_header(tag, step, seq_id, dtype, shape), dev));
  }

  std::unique_ptr<PendingRecv> irecv(int peer, Tag tag, const Expectation& want, at::Tensor into) override {
    GLMPIPE_CHECK(peer >= 0 && peer < world()) << "NcclTransport: rank " << rank() << ": receive from peer " << peer
                                               << " (NCCL needs a specific source rank)";
    GLMPIPE_CHECK(!into.defined()) << "NcclTransport: receiving into a provided tensor is not supported";
    Expectation w = want;
    w.tag = tag;
    return std::make_unique<NcclPendingRecv>(this, peer, tag, std::move(w));
  }

  ActivationHeader recv_device(int peer, Tag tag, const Expectation& want, void* dev, int64_t capacity) override {
    Expectation w = want;
    w.tag = tag;
    ActivationHeader h = recv_header(peer, w, Duration::zero());
    GLMPIPE_CHECK(h.nbytes <= capacity) << "rank " << rank() << " received from rank " << peer << ": "
                                        << to_string(h) << " does not fit a buffer of " << capacity << " bytes";
    recv_payload(peer, h, dev, Duration::zero());
    return h;
  }

  // ---- used by the pending ops ----
  bool test_send(NcclSendState& s) {
    if (s.done) return true;
    std::lock_guard<std::mutex> lock(mu_);
    int flag = 0;
    GLMPIPE_MPI_CHECK(MPI_Test(&s.hreq, &flag, MPI_STATUS_IGNORE)) << "rank " << rank() << " sending a header to rank " << s.peer;
    if (!flag) return false;
    cudaError_t q = cudaEventQuery(s.done_event);
    if (q == cudaErrorNotReady) return false;
    GLMPIPE_CUDA_CHECK(q) << "rank " << rank() << " sending to rank " << s.peer;
    release(s);
    return true;
  }

  void wait_send(NcclSendState& s, Duration timeout) {
    poll([&] { return test_send(s); }, timeout,
         "rank " + std::to_string(s.peer) + " (stage " + std::to_string(s.peer) + ") has not received our message");
  }

  void release(NcclSendState& s) {
    if (s.staging) cudaFreeAsync(s.staging, stream_), s.staging = nullptr;
    if (s.done_event) cudaEventDestroy(s.done_event), s.done_event = nullptr;
    s.keep = at::Tensor();
    s.done = true;
  }

  ActivationHeader recv_header(int peer, const Expectation& want, Duration timeout) {
    ActivationHeader h;
    MPI_Request req;
    {
      std::lock_guard<std::mutex> lock(mu_);
      GLMPIPE_MPI_CHECK(MPI_Irecv(&h, sizeof(h), MPI_BYTE, peer, kNcclHeaderTag, mpi_, &req))
          << "rank " << rank() << " posting a header receive from rank " << peer;
    }
    poll([&] {
      std::lock_guard<std::mutex> lock(mu_);
      int flag = 0;
      GLMPIPE_MPI_CHECK(MPI_Test(&req, &flag, MPI_STATUS_IGNORE)) << "rank " << rank() << " receiving from rank " << peer;
      return flag != 0;
    }, timeout, "no message from rank " + std::to_string(peer) + " (stage " + std::to_string(peer) + ")",
         [&] { MPI_Cancel(&req); MPI_Request_free(&req); });
    validate(h, want, rank(), peer);
    return h;
  }

  void recv_payload(int peer, const ActivationHeader& h, void* dev, Duration timeout) {
    cudaEvent_t ev;
    {
      std::lock_guard<std::mutex> lock(mu_);
      GLMPIPE_NCCL_CHECK(ncclRecv(dev, size_t(h.nbytes), ncclUint8, peer, nccl_, stream_))
          << "rank " << rank() << " receiving " << to_string(h) << " from rank " << peer;
      GLMPIPE_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming)) << "rank " << rank();
      GLMPIPE_CUDA_CHECK(cudaEventRecord(ev, stream_)) << "rank " << rank();
    }
    wait_event(ev, peer, timeout);
  }

  Received recv_tensor(int peer, const Expectation& want, Duration timeout) {
    Received r;
    r.header = recv_header(peer, want, timeout);
    r.source = peer;
    const auto shape = header_shape(r.header);
    r.tensor = at::empty(shape, at::TensorOptions().dtype(to_scalar_type(static_cast<DType>(r.header.dtype))));
    void* dev = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      GLMPIPE_CUDA_CHECK(cudaMallocAsync(&dev, std::max<int64_t>(r.header.nbytes, 1), stream_)) << "rank " << rank();
    }
    recv_payload(peer, r.header, dev, timeout);
    GLMPIPE_CUDA_CHECK(cudaMemcpyAsync(r.tensor.data_ptr(), dev, r.header.nbytes, cudaMemcpyDeviceToHost, stream_))
        << "rank " << rank() << " copying a received tensor to the host";
    GLMPIPE_CUDA_CHECK(cudaFreeAsync(dev, stream_)) << "rank " << rank();
    GLMPIPE_CUDA_CHECK(cudaStreamSynchronize(stream_)) << "rank " << rank();
    return r;
  }

 private:
  std::unique_ptr<NcclSendState> post_send(int peer, const ActivationHeader& h, const void* dev) {
    GLMPIPE_CHECK(peer >= 0 && peer < world()) << "NcclTransport: rank " << rank() << ": peer rank " << peer;
    GLMPIPE_CHECK(h.nbytes <= opt_.transport.max_message_bytes) << "NcclTransport: " << to_string(h) << " exceeds the cap";
    auto s = std::make_unique<NcclSendState>();
    s->header = h;
    s->peer = peer;
    std::lock_guard<std::mutex> lock(mu_);
    GLMPIPE_MPI_CHECK(MPI_Isend(&s->header, sizeof(ActivationHeader), MPI_BYTE, peer, kNcclHeaderTag, mpi_, &s->hreq))
        << "rank " << rank() << " sending a header to rank " << peer;
    GLMPIPE_NCCL_CHECK(ncclSend(dev, size_t(h.nbytes), ncclUint8, peer, nccl_, stream_))
        << "rank " << rank() << " sending " << to_string(h) << " to rank " << peer;
    GLMPIPE_CUDA_CHECK(cudaEventCreateWithFlags(&s->done_event, cudaEventDisableTiming)) << "rank " << rank();
    GLMPIPE_CUDA_CHECK(cudaEventRecord(s->done_event, stream_)) << "rank " << rank();
    return s;
  }

  void wait_event(cudaEvent_t ev, int peer, Duration timeout) {
    try {
      poll([&] {
        cudaError_t q = cudaEventQuery(ev);
        if (q == cudaErrorNotReady) return false;
        GLMPIPE_CUDA_CHECK(q) << "rank " << rank() << " receiving from rank " << peer;
        return true;
      }, timeout, "NCCL payload from rank " + std::to_string(peer) + " (stage " + std::to_string(peer) + ") did not arrive");
    } catch (...) {
      cudaEventDestroy(ev);
      throw;
    }
    cudaEventDestroy(ev);
  }

  // Polls `done` (spin, then sleep); on timeout runs `on_timeout`, aborts the NCCL communicator
  // (kernels stuck in a send/recv would otherwise never return) and throws.
  template <class Done>
  void poll(Done done, Duration timeout, const std::string& what, const std::function<void()>& on_timeout = {}) {
    if (timeout <= Duration::zero()) timeout = opt_.transport.timeout;
    const auto start = Clock::now();
    while (!done()) {
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(nccl_, &async);
      const bool failed = async != ncclSuccess && async != ncclInProgress;
      const auto now = Clock::now();
      if (failed || now - start >= timeout) {
        if (on_timeout) on_timeout();
        abort_comm();
        if (failed) GLMPIPE_FAIL() << "rank " << rank() << ": NCCL error: " << ncclGetErrorString(async) << " (" << what << ")";
        GLMPIPE_FAIL() << "rank " << rank() << " (stage " << rank() << "): " << what << " for "
                       << std::chrono::duration<double>(timeout).count() << " s: it may be dead or stuck";
      }
      if (now - start >= opt_.transport.spin) std::this_thread::sleep_for(opt_.transport.poll_interval);
    }
  }

  void abort_comm() {
    if (aborted_ || !nccl_) return;
    aborted_ = true;
    ncclCommAbort(nccl_);
    nccl_ = nullptr;
  }

  RankContext ctx_;
  NcclOptions opt_;
  int device_ = 0;
  MPI_Comm mpi_ = MPI_COMM_NULL;
  ncclComm_t nccl_ = nullptr;
  cudaStream_t stream_ = nullptr;
  bool aborted_ = false;
  std::mutex mu_;
};

NcclPendingSend::~NcclPendingSend() {
  try {
    if (!s_->done) t_->wait_send(*s_, Duration::zero());
  } catch (const std::exception& e) {
    spdlog::warn("dropping an unfinished NCCL send: {}", e.what());
  }
}
bool NcclPendingSend::test() { return t_->test_send(*s_); }
void NcclPendingSend::wait(Duration timeout) { t_->wait_send(*s_, timeout); }
Received NcclPendingRecv::wait(Duration timeout) { return t_->recv_tensor(peer_, want_, timeout); }

}  // namespace

std::unique_ptr<NcclTransport> make_nccl_transport(const RankContext& ctx, const NcclOptions& options) {
  return std::make_unique<NcclTransportImpl>(ctx, options);
}

}  // namespace glmpipe
