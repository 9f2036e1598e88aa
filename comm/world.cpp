#include "comm/world.h"

#include <mpi.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "comm/job_teardown.h"
#include "comm/rank_context.h"
#include "common/error.h"

namespace glmpipe {

bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
}

bool mpi_is_live() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

void abort_world_if_initialized(int code) {
  if (!mpi_is_live()) return;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  before_job_abort(rank);  // the launcher and a cut-off host's daemon must not outlive the job
  MPI_Abort(MPI_COMM_WORLD, code);
}

std::string mpi_error_string(int code) {
  char buf[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(buf, len) + " (code " + std::to_string(code) + ")";
}

void finalize_mpi() {
  if (mpi_is_live()) MPI_Finalize();
}

static ThreadLevel to_thread_level(int provided) {
  switch (provided) {
    case MPI_THREAD_SINGLE: return ThreadLevel::kSingle;
    case MPI_THREAD_FUNNELED: return ThreadLevel::kFunneled;
    case MPI_THREAD_SERIALIZED: return ThreadLevel::kSerialized;
    default: return ThreadLevel::kMultiple;
  }
}

// Local rank and size from the host names of all ranks (used when the launcher does not say).
static void local_from_hostnames(const std::string& host, int rank, int world, int* local_rank,
                                 int* local_size) {
  constexpr int kLen = 256;
  std::vector<char> mine(kLen, 0), all(size_t(kLen) * world, 0);
  std::strncpy(mine.data(), host.c_str(), kLen - 1);
  GLMPIPE_MPI_CHECK(MPI_Allgather(mine.data(), kLen, MPI_CHAR, all.data(), kLen, MPI_CHAR, MPI_COMM_WORLD))
      << "gathering host names";
  *local_rank = 0;
  *local_size = 0;
  for (int r = 0; r < world; ++r) {
    if (std::strncmp(all.data() + size_t(r) * kLen, mine.data(), kLen) != 0) continue;
    if (r < rank) ++*local_rank;
    ++*local_size;
  }
}

RankContext RankContext::from_mpi() {
  int provided = MPI_THREAD_MULTIPLE;
  if (!mpi_is_live()) {
    int fin = 0;
    MPI_Finalized(&fin);
    GLMPIPE_CHECK(!fin) << "RankContext::from_mpi: MPI was already finalized";
    GLMPIPE_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided)) << "initializing MPI";
  } else {
    GLMPIPE_MPI_CHECK(MPI_Query_thread(&provided)) << "querying MPI thread level";
  }
  int rank = 0, world = 1;
  GLMPIPE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank)) << "reading the rank";
  GLMPIPE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world)) << "reading the world size";
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  int local_rank = 0, local_size = 1;
  const char* env_lr = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  const char* env_ls = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  if (env_lr && env_ls) {
    local_rank = std::atoi(env_lr);
    local_size = std::atoi(env_ls);
  } else {
    local_from_hostnames(host, rank, world, &local_rank, &local_size);
  }
  return RankContext(rank, world, local_rank, local_size, host, to_thread_level(provided));
}

}  // namespace glmpipe
