// The transports of one stage, per edge (edge_plan.h says which kind each edge gets):
//
//   StageEdges e = StageEdges::build(ctx, devices, options);   // collective over MPI_COMM_WORLD
//   e.next().data->isend(e.next().peer(), Tag::kActivations, ...);   // NCCL or MPI
//   e.host()->isend(e.next().peer(), Tag::kControl, ...);            // host tensors: always MPI
//
// host() is the MPI transport every rank has (control messages, tokens, sampling parameters,
// start-up reports, barriers); an NCCL edge's data transport is the one NCCL transport of this
// rank (one communicator over the ranks with an NCCL edge). StageEdges owns both.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "comm/edge_plan.h"
#include "comm/rank_context.h"
#include "comm/transport.h"

namespace glmpipe {

struct Edge {
  EdgeChoice choice;
  Transport* data = nullptr;  // carries this edge's activations (null when the edge does not exist)
  int peer() const { return choice.peer; }
  bool exists() const { return choice.exists(); }
};

class StageEdges {
 public:
  // Every edge over one transport (an MPI transport, or null for a single process). Not owned.
  static StageEdges uniform(const RankContext& ctx, Transport* transport);
  // The plan's edges: an MPI transport for every rank, plus the NCCL transport where select_edges
  // says so. Collective over MPI_COMM_WORLD when any edge of the plan uses NCCL. `devices[r]` is
  // rank r's device.
  static StageEdges build(const RankContext& ctx, const std::vector<std::string>& devices,
                          const TransportOptions& options);

  const Edge& prev() const { return prev_; }
  const Edge& next() const { return next_; }
  const Edge& feedback() const { return feedback_; }
  Transport* host() const { return host_; }
  std::string to_string() const { return choices_.to_string(); }
  // The same edges without ownership (for the stage loop; the owner must outlive it).
  StageEdges view() const;

  // Ends the transports: barrier on the host transport (unless `failing`), then releases them
  // (`failing`: leaked, since their destructors may wait on a dead peer; the job is being aborted).
  void close(bool failing);

 private:
  StageEdgeChoices choices_;
  Edge prev_, next_, feedback_;
  Transport* host_ = nullptr;
  std::unique_ptr<Transport> owned_host_, owned_nccl_;
};

}  // namespace glmpipe
