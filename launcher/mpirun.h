// Builds the `mpirun` command line that starts one glmpipe process per pipeline stage (Open MPI 4.1).
//
//   LaunchSpec spec;  spec.ranks = {{"", 1}, {"", 1}};       // two single-thread CPU stages
//   auto argv = build_mpirun_argv(spec, {"glmpipe", "stage", "--config", "d.yaml"});
//   // mpirun --allow-run-as-root --mca btl self,vader -np 2 -x OMP_NUM_THREADS=1 ... glmpipe stage ...
//
// Rules (what each flag is for):
//  * ranks with the same host and environment that follow each other share one app context
//    (`-np k`); otherwise MPMD: `-np 1 -x OMP_NUM_THREADS=2 prog : -np 1 -x OMP_NUM_THREADS=1 prog`.
//    Per-rank environment: OMP_NUM_THREADS and GLMPIPE_THREADS for CPU ranks, GLMPIPE_DEVICE for
//    GPU ranks, plus RankLaunch::env.
//  * `--bind-to none` when bind_to_none, or when a CPU rank runs several threads (mpirun's default
//    binding would pin all of its threads to one core).
//  * single host: `--mca btl self,vader` (shared memory, no TCP port) and `--oversubscribe` when there
//    are more ranks than cores; several hosts (or a hostfile): `--mca btl self,vader,tcp` (shared
//    memory within a host, TCP between hosts) and `--host a:2,b:1` (the hostfile built from the
//    ranks' hosts, inline: ranks must be grouped by host, in rank order, since mpirun maps by slot)
//    or `--hostfile F`. LaunchSpec::btl replaces the default transports.
//  * `--mca NAME VALUE` for each LaunchSpec::mca entry, in order, after the transports.
//  * `-x NAME` for each name in forward_env (the GLMPIPE_* variables of the caller, by default from
//    glmpipe_env_names()); `--allow-run-as-root` when as_root.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace glmpipe {

struct RankLaunch {
  std::string host;  // "" or "localhost": this machine
  int threads = 1;   // intra-op threads of a CPU rank
  int device = -1;   // CUDA device index; -1: CPU rank
  std::vector<std::pair<std::string, std::string>> env;  // extra per-rank variables
};

bool running_as_root();
// Names of the GLMPIPE_* variables in this process's environment, sorted.
std::vector<std::string> glmpipe_env_names();

struct LaunchSpec {
  std::vector<RankLaunch> ranks;  // rank i = stage i
  std::string hostfile;           // used instead of --host when set
  std::vector<std::string> btl;   // transports; empty: self,vader (one host) or self,vader,tcp
  std::vector<std::pair<std::string, std::string>> mca;  // --mca NAME VALUE, in order
  bool bind_to_none = true;
  std::vector<std::string> extra_args;  // inserted before the first app context
  bool as_root = running_as_root();
  int local_cores = 0;                  // 0: std::thread::hardware_concurrency()
  std::vector<std::string> forward_env;  // variable names passed with -x NAME
  std::string mpirun = "mpirun";
};

// Throws glmpipe::Error on an invalid spec (no ranks, threads < 1, ranks not grouped by host, ...).
std::vector<std::string> build_mpirun_argv(const LaunchSpec& spec, const std::vector<std::string>& program_argv);

// Joins argv into one line a POSIX shell reads back as the same argv (for logs and --dry-run).
std::string shell_quote_join(const std::vector<std::string>& argv);

}  // namespace glmpipe
