// The NCCL transport's stand-in for builds without CUDA (nccl_transport_cuda.cpp replaces it).
#include "comm/nccl_transport.h"

#include "common/error.h"

#ifndef GLMPIPE_HAVE_CUDA
namespace glmpipe {

bool nccl_transport_built() { return false; }

std::unique_ptr<NcclTransport> make_nccl_transport(const RankContext& ctx, const NcclOptions&) {
  GLMPIPE_FAIL() << "rank " << ctx.rank() << ": the NCCL transport is not available: glmpipe was built without "
                 << "CUDA (configure with the CUDA toolkit and NCCL present, GLMPIPE_CUDA=ON)";
  return nullptr;
}

}  // namespace glmpipe
#endif
