#include "comm/edge_plan.h"

#include <sstream>

#include "common/error.h"

namespace glmpipe {

const char* transport_kind_name(TransportKind kind) { return kind == TransportKind::kNccl ? "nccl" : "mpi"; }

const char* edge_role_name(EdgeRole role) {
  switch (role) {
    case EdgeRole::kPrev: return "prev";
    case EdgeRole::kNext: return "next";
    case EdgeRole::kFeedback: return "feedback";
  }
  return "?";
}

bool is_cuda_device(const std::string& device) { return device == "cuda" || device.rfind("cuda:", 0) == 0; }

namespace {

// The activation edge between world ranks `a` (this one) and `b`.
EdgeChoice activation_edge(EdgeRole role, const std::vector<std::string>& devices, int a, int b, bool nccl_built) {
  EdgeChoice e;
  e.role = role;
  e.peer = b;
  const std::string path = devices[a] + " -> " + devices[b];
  const bool both_cuda = is_cuda_device(devices[a]) && is_cuda_device(devices[b]);
  if (both_cuda && nccl_built) {
    e.kind = TransportKind::kNccl;
    e.reason = path;
  } else {
    e.kind = TransportKind::kMpi;
    e.reason = path + (both_cuda ? ", this build has no NCCL" : "");
  }
  return e;
}

}  // namespace

bool StageEdgeChoices::uses_nccl() const {
  return (prev.exists() && prev.kind == TransportKind::kNccl) || (next.exists() && next.kind == TransportKind::kNccl) ||
         (feedback.exists() && feedback.kind == TransportKind::kNccl);
}

std::string StageEdgeChoices::to_string() const {
  std::ostringstream os;
  bool first = true;
  for (const EdgeChoice* e : {&prev, &next, &feedback}) {
    os << (first ? "" : "; ") << edge_role_name(e->role) << ": ";
    first = false;
    if (!e->exists()) os << "none";
    else os << "rank " << e->peer << " " << transport_kind_name(e->kind) << " (" << e->reason << ")";
  }
  return os.str();
}

StageEdgeChoices select_edges(const std::vector<std::string>& devices, int rank, bool nccl_built) {
  const int world = static_cast<int>(devices.size());
  GLMPIPE_CHECK(rank >= 0 && rank < world) << "select_edges: rank " << rank << " of a " << world << "-rank plan";
  StageEdgeChoices c;
  c.prev.role = EdgeRole::kPrev;
  c.next.role = EdgeRole::kNext;
  c.feedback.role = EdgeRole::kFeedback;
  if (world == 1) return c;  // one process: no edges at all
  if (rank > 0) c.prev = activation_edge(EdgeRole::kPrev, devices, rank, rank - 1, nccl_built);
  if (rank < world - 1) c.next = activation_edge(EdgeRole::kNext, devices, rank, rank + 1, nccl_built);
  if (rank == 0 || rank == world - 1) {
    c.feedback.peer = rank == 0 ? world - 1 : 0;
    c.feedback.kind = TransportKind::kMpi;
    c.feedback.reason = "host tensors (token ids, sampling parameters)";
  }
  return c;
}

std::vector<int> nccl_members(const std::vector<std::string>& devices, bool nccl_built) {
  std::vector<int> members;
  for (int r = 0; r < static_cast<int>(devices.size()); ++r)
    if (select_edges(devices, r, nccl_built).uses_nccl()) members.push_back(r);
  return members;
}

}  // namespace glmpipe
