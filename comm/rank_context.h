// Who am I in the pipeline: a small value type (TensorRT-LLM WorldConfig style). One MPI process per
// stage, so stage == rank. Built once by from_mpi() (or single() without MPI), validated in the
// constructor, logged once at start-up with to_string().
#pragma once

#include <string>

namespace glmpipe {

// The thread support MPI granted (mirrors MPI_THREAD_*; kNone when MPI is not used).
enum class ThreadLevel { kNone = -1, kSingle = 0, kFunneled = 1, kSerialized = 2, kMultiple = 3 };
const char* thread_level_name(ThreadLevel level);

class RankContext {
 public:
  RankContext(int rank, int world, int local_rank, int local_size, std::string hostname,
              ThreadLevel thread_level);

  // Initializes MPI if needed (MPI_Init_thread asking for MPI_THREAD_MULTIPLE; SERIALIZED and
  // FUNNELED are accepted and recorded, SINGLE is an error), then reads rank/world and the local
  // rank (OMPI_COMM_WORLD_LOCAL_RANK, else an allgather of host names). Defined in world.cpp.
  static RankContext from_mpi();
  // World of one process, no MPI.
  static RankContext single();

  int rank() const { return rank_; }
  int world() const { return world_; }
  int local_rank() const { return local_rank_; }  // index among the ranks on this host (GPU index)
  int local_size() const { return local_size_; }  // ranks on this host
  int stage() const { return rank_; }             // one stage per rank
  int num_stages() const { return world_; }
  bool is_first_stage() const { return stage() == 0; }
  bool is_last_stage() const { return stage() == num_stages() - 1; }
  int prev_rank() const { return is_first_stage() ? -1 : rank_ - 1; }  // -1 on the first stage
  int next_rank() const { return is_last_stage() ? -1 : rank_ + 1; }   // -1 on the last stage
  // Ring neighbours (the last stage feeds sampled tokens back to the first).
  int ring_prev() const { return (rank_ + world_ - 1) % world_; }
  int ring_next() const { return (rank_ + 1) % world_; }
  const std::string& hostname() const { return hostname_; }
  ThreadLevel thread_level() const { return thread_level_; }
  bool uses_mpi() const { return thread_level_ != ThreadLevel::kNone; }

  // "rank 1/3 (stage 1 of 3, local 1/3 on host h, MPI thread level multiple)"
  std::string to_string() const;

 private:
  int rank_;
  int world_;
  int local_rank_;
  int local_size_;
  std::string hostname_;
  ThreadLevel thread_level_;
};

// MPI_Finalize when initialized and not yet finalized (no-op otherwise). Defined in world.cpp.
void finalize_mpi();

// RAII: RankContext::from_mpi() on construction, finalize_mpi() at scope end.
class MpiSession {
 public:
  MpiSession() : ctx_(RankContext::from_mpi()) {}
  ~MpiSession() { finalize_mpi(); }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  const RankContext& context() const { return ctx_; }

 private:
  RankContext ctx_;
};

}  // namespace glmpipe
