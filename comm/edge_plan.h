// Which transport each edge of a stage gets, from the devices of the two ranks it joins. Pure (no
// MPI, no CUDA): every rank computes the same answer from the same plan, so the ranks agree on who
// joins the NCCL communicator without exchanging anything.
//
// A stage has up to three edges:
//   prev      activations from rank-1 (none on the first stage)
//   next      activations to rank+1   (none on the last stage)
//   feedback  sampled tokens last -> first and sampling parameters first -> last (pipelines only)
// Rules: an activation edge between two CUDA ranks goes over NCCL (when this build has it);
// anything touching a CPU rank goes over MPI (device tensors through pinned host buffers); the
// feedback edge carries host tensors (token ids, sampling parameters) and always goes over MPI, as
// do the small host tensors of every edge (micro-batch metadata, token ids, start-up reports).
#pragma once

#include <string>
#include <vector>

namespace glmpipe {

enum class TransportKind { kMpi, kNccl };
enum class EdgeRole { kPrev, kNext, kFeedback };

const char* transport_kind_name(TransportKind kind);  // "mpi" | "nccl"
const char* edge_role_name(EdgeRole role);            // "prev" | "next" | "feedback"

// "cuda" or "cuda:N" (the deployment's device strings); everything else is a host device.
bool is_cuda_device(const std::string& device);

struct EdgeChoice {
  EdgeRole role = EdgeRole::kPrev;
  int peer = -1;  // world rank at the other end; -1: this stage has no such edge
  TransportKind kind = TransportKind::kMpi;
  std::string reason;  // why this kind, for the start-up log ("cuda:0 -> cuda:1")
  bool exists() const { return peer >= 0; }
};

struct StageEdgeChoices {
  EdgeChoice prev, next, feedback;
  bool uses_nccl() const;
  // "prev: none; next: rank 1 nccl (cuda:0 -> cuda:1); feedback: rank 2 mpi (host tensors)"
  std::string to_string() const;
};

// devices[r] is rank r's device ("cpu", "cuda:0", ...). `nccl_built`: this build has the NCCL
// transport (nccl_transport_built()); without it a CUDA->CUDA edge falls back to MPI.
StageEdgeChoices select_edges(const std::vector<std::string>& devices, int rank, bool nccl_built);

// World ranks that take part in the NCCL communicator (those with an NCCL edge), ascending. Its
// communicator rank is the index in this list. Empty when no edge of the plan uses NCCL.
std::vector<int> nccl_members(const std::vector<std::string>& devices, bool nccl_built);

}  // namespace glmpipe
