// make_nccl_transport for builds without CUDA (nccl_comm_cuda.cpp replaces it).
#include "comm/nccl_transport.h"

#include "common/error.h"

#ifndef GLMPIPE_HAVE_CUDA
namespace glmpipe {

bool nccl_transport_built() { return false; }

std::unique_ptr<Transport> make_nccl_transport(const RankContext& ctx, const std::vector<int>&, const NcclOptions&) {
  GLMPIPE_FAIL() << "rank " << ctx.rank() << ": the NCCL transport is not available: glmpipe was built without "
                 << "CUDA (configure with the CUDA toolkit present, GLMPIPE_CUDA=ON)";
  return nullptr;
}

}  // namespace glmpipe
#endif
