#include "comm/stage_edges.h"

#include "comm/mpi_transport.h"
#include "comm/nccl_transport.h"
#include "common/error.h"
#include "common/log.h"

namespace glmpipe {

namespace {

Edge edge_over(const EdgeChoice& c, Transport* mpi, Transport* nccl) {
  Edge e;
  e.choice = c;
  if (c.exists()) e.data = c.kind == TransportKind::kNccl ? nccl : mpi;
  return e;
}

}  // namespace

StageEdges StageEdges::uniform(const RankContext& ctx, Transport* transport) {
  StageEdges e;
  e.host_ = transport;
  e.choices_ = select_edges(std::vector<std::string>(ctx.world(), "cpu"), ctx.rank(), false);
  if (ctx.world() > 1)
    GLMPIPE_CHECK(transport) << "rank " << ctx.rank() << ": a pipeline of " << ctx.world() << " stages needs a transport";
  e.prev_ = edge_over(e.choices_.prev, transport, nullptr);
  e.next_ = edge_over(e.choices_.next, transport, nullptr);
  e.feedback_ = edge_over(e.choices_.feedback, transport, nullptr);
  return e;
}

StageEdges StageEdges::build(const RankContext& ctx, const std::vector<std::string>& devices,
                             const TransportOptions& options) {
  GLMPIPE_CHECK(static_cast<int>(devices.size()) == ctx.world())
      << "rank " << ctx.rank() << ": a plan of " << devices.size() << " ranks in a world of " << ctx.world();
  StageEdges e;
  e.choices_ = select_edges(devices, ctx.rank(), nccl_transport_built());
  if (ctx.world() == 1) return e;
  e.owned_host_ = make_mpi_transport(ctx, options);
  e.host_ = e.owned_host_.get();
  const std::vector<int> members = nccl_members(devices, nccl_transport_built());
  if (!members.empty()) {  // every rank computes the same members: all reach this collective
    NcclOptions no;
    no.transport = options;
    const std::string& d = devices[ctx.rank()];
    if (d.rfind("cuda:", 0) == 0) no.device = std::stoi(d.substr(5));
    e.owned_nccl_ = make_nccl_transport(ctx, members, no);
  }
  e.prev_ = edge_over(e.choices_.prev, e.host_, e.owned_nccl_.get());
  e.next_ = edge_over(e.choices_.next, e.host_, e.owned_nccl_.get());
  e.feedback_ = edge_over(e.choices_.feedback, e.host_, e.owned_nccl_.get());
  spdlog::info("edges: {}", e.choices_.to_string());
  return e;
}

StageEdges StageEdges::view() const {
  StageEdges v;
  v.choices_ = choices_;
  v.prev_ = prev_;
  v.next_ = next_;
  v.feedback_ = feedback_;
  v.host_ = host_;
  return v;
}

void StageEdges::close(bool failing) {
  if (failing) {
    // Their destructors may wait on MPI/NCCL for a peer that failed; the job is about to be aborted.
    owned_nccl_.release();
    owned_host_.release();
    host_ = nullptr;
    return;
  }
  if (owned_nccl_) owned_nccl_->barrier();
  if (host_) host_->barrier();
  owned_nccl_.reset();
  owned_host_.reset();
  host_ = nullptr;
}

}  // namespace glmpipe
