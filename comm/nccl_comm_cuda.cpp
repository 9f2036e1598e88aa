// NcclComm over NCCL + CUDA events, and make_nccl_transport (built only with CUDA; see
// nccl_transport.h). Not exercised on machines without a GPU: tests/gpu and scripts/device_check.sh.
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>

#include "comm/header_channel_mpi.h"
#include "comm/nccl_transport.h"
#include "comm/world.h"
#include "common/error.h"
#include "common/log.h"

#define GLMPIPE_CUDA_CHECK(call)                                                                  \
  if (cudaError_t glmpipe_cuda_rc_ = (call); glmpipe_cuda_rc_ == cudaSuccess) {                   \
  } else                                                                                          \
    ::glmpipe::detail::ErrorBuilder(__FILE__, __LINE__, nullptr).stream()                         \
        << #call << " failed: " << cudaGetErrorString(glmpipe_cuda_rc_) << ": "

namespace glmpipe {

bool nccl_transport_built() { return true; }

namespace {

class CudaNcclComm : public NcclComm {
 public:
  // Non-blocking ncclCommInitRankConfig: returns at once, state() is kInProgress until every member
  // has joined.
  CudaNcclComm(int device, int nranks, int rank, const ncclUniqueId& id) : device_(device), rank_(rank) {
    GLMPIPE_CUDA_CHECK(cudaSetDevice(device_)) << "NCCL communicator rank " << rank_;
    GLMPIPE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)) << "NCCL communicator";
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t rc = ncclCommInitRankConfig(&comm_, nranks, id, rank, &config);
    GLMPIPE_CHECK(rc == ncclSuccess || rc == ncclInProgress)
        << "ncclCommInitRankConfig (rank " << rank << " of " << nranks << ", device " << device_
        << ") failed: " << ncclGetErrorString(rc);
  }

  ~CudaNcclComm() override {
    for (auto& [id, g] : groups_)
      if (g.event) cudaEventDestroy(g.event);
    if (comm_) {
      // Finalize (non-blocking: poll) then destroy; abort when it does not finish in 10 s.
      bool clean = ncclCommFinalize(comm_) != ncclSystemError;
      const auto start = std::chrono::steady_clock::now();
      ncclResult_t st = ncclInProgress;
      while (clean && st == ncclInProgress && std::chrono::steady_clock::now() - start < std::chrono::seconds(10)) {
        ncclCommGetAsyncError(comm_, &st);
        if (st == ncclInProgress) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (clean && st == ncclSuccess) ncclCommDestroy(comm_);
      else ncclCommAbort(comm_);
    }
    if (stream_) cudaStreamDestroy(stream_);
  }

  State state(std::string* error) override {
    if (!comm_) {
      if (error) *error = "communicator aborted";
      return State::kFailed;
    }
    ncclResult_t st = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(comm_, &st);
    if (rc != ncclSuccess) st = rc;
    if (st == ncclInProgress) return State::kInProgress;
    if (st != ncclSuccess) {
      if (error) *error = std::string(ncclGetErrorString(st)) + ": " + ncclGetLastError(comm_);
      return State::kFailed;
    }
    // A launch that returned ncclInProgress has now been enqueued: its completion event goes after it.
    for (auto& [id, g] : groups_)
      if (!g.event) record(g);
    return State::kReady;
  }

  int64_t post_group(const std::vector<P2POp>& ops) override {
    GLMPIPE_CUDA_CHECK(cudaSetDevice(device_)) << "NCCL communicator rank " << rank_;
    ncclGroupStart();
    for (const P2POp& op : ops) {
      const ncclResult_t rc = op.kind == P2POp::Kind::kSend
                                  ? ncclSend(op.data, size_t(op.bytes), ncclUint8, op.peer, comm_, stream_)
                                  : ncclRecv(op.data, size_t(op.bytes), ncclUint8, op.peer, comm_, stream_);
      if (rc != ncclSuccess && rc != ncclInProgress) {
        ncclGroupEnd();
        GLMPIPE_FAIL() << "NCCL rank " << rank_ << ": " << (op.kind == P2POp::Kind::kSend ? "ncclSend to" : "ncclRecv from")
                       << " rank " << op.peer << " (" << op.bytes << " bytes) failed: " << ncclGetErrorString(rc);
      }
    }
    const ncclResult_t rc = ncclGroupEnd();
    GLMPIPE_CHECK(rc == ncclSuccess || rc == ncclInProgress)
        << "NCCL rank " << rank_ << ": ncclGroupEnd of " << ops.size() << " operations failed: " << ncclGetErrorString(rc);
    const int64_t id = next_++;
    Entry& g = groups_[id];
    if (rc == ncclSuccess) record(g);  // otherwise once state() sees the launch finish
    return id;
  }

  bool finished(int64_t group) override {
    Entry& g = groups_.at(group);
    if (!g.event) return false;
    const cudaError_t q = cudaEventQuery(g.event);
    if (q == cudaErrorNotReady) return false;
    GLMPIPE_CUDA_CHECK(q) << "NCCL rank " << rank_ << ": waiting for a transfer";
    return true;
  }

  void release(int64_t group) override {
    auto it = groups_.find(group);
    if (it == groups_.end()) return;
    if (it->second.event) cudaEventDestroy(it->second.event);
    groups_.erase(it);
  }

  void abort() override {
    if (!comm_) return;
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }

  at::Tensor send_source(const at::Tensor& t) override {
    GLMPIPE_CHECK(t.is_cuda()) << "NcclTransport: a " << t.device() << " tensor cannot go over NCCL (host tensors "
                               << "travel over MPI: see comm/edge_plan.h)";
    GLMPIPE_CHECK(t.get_device() == device_) << "NcclTransport: a tensor on " << t.device()
                                             << " sent from the communicator of cuda:" << device_;
    at::Tensor c = t.contiguous();
    // The send runs on our stream: it must start after the kernels that produced `c`.
    cudaEvent_t ready;
    GLMPIPE_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming)) << "NcclTransport";
    GLMPIPE_CUDA_CHECK(cudaEventRecord(ready, c10::cuda::getCurrentCUDAStream(device_).stream())) << "NcclTransport";
    GLMPIPE_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0)) << "NcclTransport";
    cudaEventDestroy(ready);
    return c;
  }

  at::Tensor empty(const std::vector<int64_t>& shape, at::ScalarType dtype) override {
    return at::empty(shape, at::TensorOptions().dtype(dtype).device(at::kCUDA, device_));
  }

 private:
  struct Entry {
    cudaEvent_t event = nullptr;
  };
  void record(Entry& g) {
    GLMPIPE_CUDA_CHECK(cudaEventCreateWithFlags(&g.event, cudaEventDisableTiming)) << "NCCL rank " << rank_;
    GLMPIPE_CUDA_CHECK(cudaEventRecord(g.event, stream_)) << "NCCL rank " << rank_;
  }
  int device_;
  int rank_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int64_t next_ = 0;
  std::map<int64_t, Entry> groups_;
};

}  // namespace

std::unique_ptr<Transport> make_nccl_transport(const RankContext& ctx, const std::vector<int>& members,
                                               const NcclOptions& options) {
  GLMPIPE_CHECK(mpi_is_live()) << "NcclTransport: MPI is not initialized (call RankContext::from_mpi())";
  const bool member = std::find(members.begin(), members.end(), ctx.rank()) != members.end();
  // Collective: the communicator spans the members only (the CUDA ranks with an NCCL edge).
  MPI_Comm sub = MPI_COMM_NULL;
  GLMPIPE_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, member ? 0 : MPI_UNDEFINED, ctx.rank(), &sub))
      << "rank " << ctx.rank() << ": splitting the NCCL ranks off MPI_COMM_WORLD";
  if (!member) return nullptr;
  int crank = 0, csize = 0;
  MPI_Comm_rank(sub, &crank);
  MPI_Comm_size(sub, &csize);
  int count = 0;
  GLMPIPE_CUDA_CHECK(cudaGetDeviceCount(&count)) << "rank " << ctx.rank() << ": counting CUDA devices";
  const int device = options.device >= 0 ? options.device : ctx.local_rank();
  GLMPIPE_CHECK(device < count) << "rank " << ctx.rank() << ": CUDA device " << device << " requested, " << count
                                << " present";
  ncclUniqueId id;
  if (crank == 0) {
    const ncclResult_t rc = ncclGetUniqueId(&id);
    GLMPIPE_CHECK(rc == ncclSuccess) << "rank " << ctx.rank() << ": ncclGetUniqueId failed: " << ncclGetErrorString(rc);
  }
  GLMPIPE_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, sub)) << "broadcasting the NCCL id";
  auto comm = std::make_unique<CudaNcclComm>(device, csize, crank, id);
  auto headers = make_mpi_header_channel(sub);
  MPI_Comm_free(&sub);
  spdlog::info("rank {}: NCCL communicator rank {} of {} on cuda:{}", ctx.rank(), crank, csize, device);
  return make_nccl_transport_over(ctx.rank(), ctx.world(), members, std::move(comm), std::move(headers),
                                  options.transport);
}

}  // namespace glmpipe
