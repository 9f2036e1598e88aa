// Session: everything one rank needs to serve a command, built from the CLI options and (when
// given) a deployment YAML:
//
//   single process  (no --config, or a 1-rank plan):  whole model, no MPI
//   pipeline        (--config with several ranks):
//     started by hand  → plans, prints the exact mpirun line and runs it as its parent (--dry-run: print only)
//     started by mpirun → RankContext from MPI, checks world == stages, loads this stage's units
//
// Every rank computes the same plan (make_plan is a pure function of the same files), so ranks
// agree without exchanging it; the world-size check catches a mismatched launch.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "comm/liveness.h"
#include "comm/rank_context.h"
#include "comm/stage_edges.h"
#include "comm/transport.h"
#include "launcher/command.h"
#include "model/model.h"
#include "planner/deployment.h"
#include "planner/plan.h"
#include "stage/stage_runner.h"

namespace CLI { class App; }

namespace glmpipe {

struct SessionOptions {
  std::string model;         // --model DIR (overrides model.path)
  std::string config;        // --config FILE.yaml
  std::string dtype;         // --dtype float32|bfloat16 (overrides model.dtype)
  std::string quantization;  // --quantize int8|int4 (overrides model.quantization)
  int threads = 0;           // --threads (single process; 0 = all cores)
  int64_t max_batch = 0;     // --max-batch (0 = config / 1)
  int64_t max_seq = 0;       // --max-seq (0 = config / model max_sequence_length)
  int micro_batches = 0;     // --micro-batches (0 = config / number of stages)
  int64_t prefill_chunk = -1;  // --prefill-chunk N (-1 = config / 512; 0 = whole prompts)
  double liveness_timeout_s = 0;  // --liveness-timeout S (0 = mpi.liveness_timeout_s / 60 s)
  bool dry_run = false;      // --dry-run: print the mpirun line and exit
  // Pipelines: hand SIGTERM/SIGINT to the ranks as SIGUSR1 (mpirun kills the job on SIGTERM) and
  // run mpirun in a process group of its own. Set by `serve`, which drains on SIGUSR1.
  bool supervise_mpirun = false;
};

// Adds the shared options above to a subcommand.
void add_session_options(CLI::App& app, SessionOptions& o);

class Session {
 public:
  // Returns null when this process started the pipeline under mpirun (it stays mpirun's parent,
  // see launcher/supervise.h) and mpirun has ended (a failure sets the exit code or throws), or
  // when --dry-run printed the launch line.
  static std::unique_ptr<Session> create(const SessionOptions& o, TokenCallback on_token = {});
  ~Session();

  const RankContext& ctx() const { return ctx_; }
  const Plan& plan() const { return plan_; }
  // generation: the sampling defaults of every request (YAML `generation:`, else SamplingParams{}).
  const Deployment& deployment() const { return dep_; }
  const ModelConfig& config() const { return shard_->config(); }
  StageRunner& runner() { return *runner_; }
  // Heartbeats between the ranks (null with one rank); see comm/liveness.h.
  LivenessMonitor* liveness() { return liveness_.get(); }
  std::string model_dir() const { return dep_.model.path; }

  // Runs the stage loop to completion and logs this stage's timings.
  void run();

 private:
  Session() = default;
  // Opens the checkpoint and loads this stage's shard (errors name the rank and the directory).
  void load_shard(const StagePlan& sp, bool cuda, const LoadCallback& on_progress);
  bool mpi_ = false;
  int64_t start_rss_ = 0;     // VmRSS before loading weights
  int64_t load_peak_rss_ = 0; // VmHWM once loaded with the KV cache allocated
  int64_t loaded_bytes_ = 0;  // bytes of this stage's parameters
  int64_t loaded_tensors_ = 0, loaded_file_bytes_ = 0;  // tensors read, their bytes on disk
  RankContext ctx_ = RankContext::single();
  Deployment dep_;
  Plan plan_;
  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<Shard> shard_;
  StageEdges edges_;  // this rank's transports, per edge (none for one process)
  std::unique_ptr<LivenessMonitor> liveness_;
  std::unique_ptr<StageRunner> runner_;
};

}  // namespace glmpipe
