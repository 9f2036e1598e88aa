#include "comm/rank_context.h"

#include <unistd.h>

#include <sstream>
#include <utility>

#include "common/error.h"

namespace glmpipe {

const char* thread_level_name(ThreadLevel level) {
  switch (level) {
    case ThreadLevel::kNone: return "none (no MPI)";
    case ThreadLevel::kSingle: return "single";
    case ThreadLevel::kFunneled: return "funneled";
    case ThreadLevel::kSerialized: return "serialized";
    case ThreadLevel::kMultiple: return "multiple";
  }
  return "?";
}

RankContext::RankContext(int rank, int world, int local_rank, int local_size, std::string hostname,
                         ThreadLevel thread_level)
    : rank_(rank), world_(world), local_rank_(local_rank), local_size_(local_size),
      hostname_(std::move(hostname)), thread_level_(thread_level) {
  GLMPIPE_CHECK(world_ >= 1) << "RankContext: world size " << world_ << " must be >= 1";
  GLMPIPE_CHECK(rank_ >= 0 && rank_ < world_) << "RankContext: rank " << rank_ << " outside [0, " << world_ << ")";
  GLMPIPE_CHECK(local_size_ >= 1 && local_size_ <= world_)
      << "RankContext: rank " << rank_ << ": local size " << local_size_ << " outside [1, " << world_ << "]";
  GLMPIPE_CHECK(local_rank_ >= 0 && local_rank_ < local_size_)
      << "RankContext: rank " << rank_ << ": local rank " << local_rank_ << " outside [0, " << local_size_ << ")";
  GLMPIPE_CHECK(thread_level_ != ThreadLevel::kSingle)
      << "RankContext: MPI granted only MPI_THREAD_SINGLE; glmpipe needs at least FUNNELED";
}

RankContext RankContext::single() {
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  return RankContext(0, 1, 0, 1, host, ThreadLevel::kNone);
}

std::string RankContext::to_string() const {
  std::ostringstream os;
  os << "rank " << rank_ << "/" << world_ << " (stage " << stage() << " of " << num_stages()
     << (is_first_stage() ? ", first" : "") << (is_last_stage() ? ", last" : "") << ", local "
     << local_rank_ << "/" << local_size_ << " on host " << hostname_ << ", MPI thread level "
     << thread_level_name(thread_level_) << ")";
  return os.str();
}

}  // namespace glmpipe
