#include "comm/header_channel_mpi.h"

#include <map>

#include "comm/mpi_transport.h"
#include "comm/world.h"
#include "common/error.h"

namespace glmpipe {

namespace {

// Apart from the MPI transport's tags (header_mpi_tag/payload_mpi_tag): its own communicator anyway.
const int kHeaderTag = header_mpi_tag(Tag::kActivations) + 100;

class MpiHeaderChannel : public HeaderChannel {
 public:
  explicit MpiHeaderChannel(MPI_Comm comm) {
    GLMPIPE_MPI_CHECK(MPI_Comm_dup(comm, &comm_)) << "NCCL header channel: duplicating its communicator";
    GLMPIPE_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN)) << "NCCL header channel";
    MPI_Comm_rank(comm_, &rank_);
  }
  ~MpiHeaderChannel() override {
    if (!mpi_is_live()) return;
    for (auto& [id, s] : slots_)
      if (!s->complete && s->recv) {
        MPI_Cancel(&s->req);
        MPI_Request_free(&s->req);
      }
    MPI_Comm_free(&comm_);
  }

  int64_t post_send(int peer, const ActivationHeader& h) override {
    auto s = std::make_unique<Slot>();
    s->header = h;
    GLMPIPE_MPI_CHECK(MPI_Isend(&s->header, sizeof(ActivationHeader), MPI_BYTE, peer, kHeaderTag, comm_, &s->req))
        << "NCCL header channel: rank " << rank_ << " sending a header to rank " << peer;
    return add(std::move(s));
  }

  int64_t post_recv(int peer) override {
    auto s = std::make_unique<Slot>();
    s->recv = true;
    GLMPIPE_MPI_CHECK(MPI_Irecv(&s->header, sizeof(ActivationHeader), MPI_BYTE, peer, kHeaderTag, comm_, &s->req))
        << "NCCL header channel: rank " << rank_ << " posting a header receive from rank " << peer;
    return add(std::move(s));
  }

  bool test(int64_t id, ActivationHeader* out) override {
    auto it = slots_.find(id);
    GLMPIPE_CHECK(it != slots_.end()) << "NCCL header channel: unknown request " << id;
    Slot& s = *it->second;
    if (!s.complete) {
      int flag = 0;
      GLMPIPE_MPI_CHECK(MPI_Test(&s.req, &flag, MPI_STATUS_IGNORE)) << "NCCL header channel: rank " << rank_;
      if (!flag) return false;
    }
    if (out) *out = s.header;
    slots_.erase(it);
    return true;
  }

  bool cancel(int64_t id) override {
    auto it = slots_.find(id);
    if (it == slots_.end()) return true;
    Slot& s = *it->second;
    if (s.complete) return false;
    MPI_Cancel(&s.req);
    MPI_Status st;
    MPI_Wait(&s.req, &st);
    int cancelled = 0;
    MPI_Test_cancelled(&st, &cancelled);
    if (cancelled) {
      slots_.erase(it);
      return true;
    }
    s.complete = true;  // a header matched it first: test() hands it out
    return false;
  }

  void barrier() override {
    GLMPIPE_MPI_CHECK(MPI_Barrier(comm_)) << "NCCL header channel: rank " << rank_ << " in a barrier";
  }

 private:
  struct Slot {
    ActivationHeader header;
    MPI_Request req = MPI_REQUEST_NULL;
    bool recv = false;
    bool complete = false;
  };
  int64_t add(std::unique_ptr<Slot> s) {
    const int64_t id = next_++;
    slots_.emplace(id, std::move(s));
    return id;
  }
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = -1;
  int64_t next_ = 0;
  std::map<int64_t, std::unique_ptr<Slot>> slots_;  // stable addresses for MPI
};

}  // namespace

std::unique_ptr<HeaderChannel> make_mpi_header_channel(MPI_Comm comm) { return std::make_unique<MpiHeaderChannel>(comm); }

}  // namespace glmpipe
