#include "launcher/session.h"

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <chrono>
#include <fstream>
#include <cstring>
#include <exception>
#include <iostream>
#include <thread>

#include "common/error.h"
#include "common/log.h"
#include "comm/cuda_info.h"
#include "comm/failure.h"
#include "comm/job_teardown.h"
#include "comm/stage_edges.h"
#include "comm/world.h"
#include "launcher/mpirun.h"
#include "launcher/startup_report.h"
#include "launcher/supervise.h"
#include "planner/model_metadata.h"

namespace glmpipe {

std::vector<std::string>& original_argv() {
  static std::vector<std::string> argv;
  return argv;
}

void add_session_options(CLI::App& app, SessionOptions& o) {
  app.add_option("--model", o.model, "HF ChatGLM checkpoint directory (overrides model.path)");
  app.add_option("--config", o.config, "deployment YAML (ranks, placement, KV budget)");
  app.add_option("--dtype", o.dtype, "compute dtype: float32 | bfloat16 (float16 computes in bfloat16 on CPU)");
  app.add_option("--quantize", o.quantization, "quantize block Linears at load: int8 | int4");
  app.add_option("--threads", o.threads, "intra-op threads for a single-process run (0 = all cores)");
  app.add_option("--max-batch", o.max_batch, "KV-cache slots: sequences in flight");
  app.add_option("--max-seq", o.max_seq, "KV-cache tokens per sequence (prompt + generated)");
  app.add_option("--micro-batches", o.micro_batches, "micro-batches in flight (default: one per stage)");
  app.add_option("--prefill-chunk", o.prefill_chunk,
                 "prompt tokens per step for ChatGLM2/3 and GLM-4 (default: kv_cache.prefill_chunk or 512; 0: whole)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  app.add_option("--liveness-timeout", o.liveness_timeout_s,
                 "seconds a rank may stay silent while work is in flight before the job ends "
                 "(overrides mpi.liveness_timeout_s; default 60)")
      ->check(CLI::Range(0.1, 86400.0));
  app.add_flag("--dry-run", o.dry_run, "print the mpirun command line and exit");
}

namespace {

at::ScalarType compute_dtype(const std::string& dtype, bool cuda) {
  if (dtype == "float32") return at::kFloat;
  if (dtype == "bfloat16") return at::kBFloat16;
  if (dtype == "float16" && !cuda)  // the CPU kernels (bf16 mat-vec, quantized) have no fp16 path: say so
    spdlog::warn("model.dtype float16 on a cpu rank: weights are kept and computed in bfloat16 (glmpipe's CPU "
                 "kernels have no float16 path); logits differ from a float16 run; set dtype bfloat16 or float32 "
                 "to choose explicitly");
  if (dtype == "float16") return cuda ? at::kHalf : at::kBFloat16;
  GLMPIPE_FAIL() << "dtype \"" << dtype << "\" is not one of float32, bfloat16, float16";
  return at::kFloat;  // not reached: GLMPIPE_FAIL throws (the compiler cannot see it)
}

Deployment build_deployment(const SessionOptions& o) {
  Deployment dep;
  if (!o.config.empty()) {
    dep = load_deployment(o.config);
  } else {
    GLMPIPE_CHECK(!o.model.empty()) << "give --model DIR or --config FILE.yaml";
    RankSpec r;
    r.device = "cpu";
    r.max_memory = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE);
    r.threads = o.threads;
    dep.ranks = {r};
    dep.model.dtype = "float32";
    dep.cpu_reserve = 0;
    dep.placement = "sequential";
    dep.kv_cache.max_seq_len = 0;  // filled from the model below
    dep.generation = SamplingParams{};  // without a deployment file: the CLI's defaults
  }
  if (!o.model.empty()) dep.model.path = o.model;
  if (!o.dtype.empty()) dep.model.dtype = o.dtype;
  if (!o.quantization.empty()) dep.model.quantization = o.quantization;
  if (o.max_batch > 0) dep.kv_cache.max_batch = o.max_batch;
  if (o.max_seq > 0) dep.kv_cache.max_seq_len = o.max_seq;
  if (o.micro_batches > 0) dep.mpi.micro_batches = o.micro_batches;
  if (o.prefill_chunk >= 0) dep.kv_cache.prefill_chunk = o.prefill_chunk;
  if (o.liveness_timeout_s > 0) dep.mpi.liveness_timeout_s = o.liveness_timeout_s;
  GLMPIPE_CHECK(!dep.model.path.empty()) << (o.config.empty() ? "" : o.config + ": ") << "model.path is not set (use --model DIR)";
  return dep;
}

// mpi.mca in file order, then mpi.tcp_if_include as btl_tcp_if_include and oob_tcp_if_include (the
// data and the control connections) unless mpi.mca names those itself.
std::vector<std::pair<std::string, std::string>> mca_parameters(const MpiSpec& mpi) {
  auto mca = mpi.mca;
  if (mpi.tcp_if_include.empty()) return mca;
  std::string list;
  for (const auto& i : mpi.tcp_if_include) list += (list.empty() ? "" : ",") + i;
  for (const char* name : {"btl_tcp_if_include", "oob_tcp_if_include"}) {
    const bool given = std::any_of(mca.begin(), mca.end(), [&](const auto& kv) { return kv.first == name; });
    if (!given) mca.emplace_back(name, list);
  }
  return mca;
}

// "rank 1 (stage 1, host node2) went silent, reported by rank 0" for a rank's report to the launcher.
std::string report_cause(const Plan& plan, const SupervisedExit& r) {
  auto name = [&](int rank) {
    std::string s = "rank " + std::to_string(rank) + " (stage " + std::to_string(rank);
    if (rank >= 0 && rank < static_cast<int>(plan.stages.size()) && !plan.stages[rank].host.empty())
      s += ", host " + plan.stages[rank].host;
    return s + ")";
  };
  if (r.silent >= 0) return "liveness: " + name(r.silent) + " went silent (reported by " + name(r.reporter) + ")";
  return name(r.reporter) + " ended the job (its message above says why)";
}

// Runs this command under mpirun with one process per stage, as mpirun's parent (see supervise.h:
// it ends a job that mpirun cannot end, e.g. across a cut link). Returns once mpirun exited 0 or
// after dry_run; when mpirun failed, sets the exit code to mpirun's (or throws, naming the cause).
// serve: SIGTERM/SIGINT reach the ranks as SIGUSR1 (drain), mpirun in its own process group.
void run_mpirun(const Plan& plan, const Deployment& dep, bool dry_run, bool serve) {
  LaunchSpec spec;
  for (const auto& s : plan.stages) {
    RankLaunch r;
    r.host = s.host;
    r.threads = s.threads > 0 ? s.threads : 1;
    r.device = s.device.rfind("cuda:", 0) == 0 ? std::stoi(s.device.substr(5)) : -1;
    spec.ranks.push_back(r);
  }
  spec.hostfile = dep.mpi.hostfile;
  if (!spec.hostfile.empty())
    GLMPIPE_CHECK(access(spec.hostfile.c_str(), R_OK) == 0)
        << dep.source_file << ": mpi.hostfile: cannot read " << spec.hostfile << " (relative paths are from the "
        << "directory glmpipe runs in)";
  spec.btl = dep.mpi.btl;
  spec.mca = mca_parameters(dep.mpi);
  spec.bind_to_none = !dep.mpi.bind_to_core;
  spec.extra_args = dep.mpi.extra_args;
  // Ranks see pipes, not the user's terminal: tell rank 0 whether to draw the progress line.
  if (isatty(STDERR_FILENO)) setenv("GLMPIPE_STDERR_TTY", "1", /*overwrite=*/0);
  if (!dry_run) {  // where a rank that ends the job reports it (comm/job_teardown.h)
    setenv(kLauncherPidEnv, std::to_string(getpid()).c_str(), 1);
    setenv(kLauncherHostEnv, host_identity().c_str(), 1);
  }
  spec.forward_env = glmpipe_env_names();  // GLMPIPE_* (log level, fault injection, pid dir, tty, launcher)
  std::vector<std::string> prog = original_argv();
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) prog[0] = std::string(exe, n);
  prog.erase(std::remove(prog.begin(), prog.end(), "--dry-run"), prog.end());
  auto argv = build_mpirun_argv(spec, prog);
  if (dry_run) {
    std::cout << shell_quote_join(argv) << std::endl;
    return;
  }
  spdlog::info("launching {} stages: {}", plan.stages.size(), shell_quote_join(argv));
  std::cout.flush();
  SuperviseOptions so;
  so.forward_as = serve ? SIGUSR1 : 0;
  so.own_group = serve;
  const SupervisedExit r = run_supervised(argv, so);
  if (r.ended_by_us)
    GLMPIPE_FAIL() << report_cause(plan, r) << "; mpirun had not ended the job " << so.grace_s
                   << " s later (it waits for a host it cannot reach): ended it";
  if (r.status == 0) return;
  if (r.reported) spdlog::error("{}; mpirun exited with status {}", report_cause(plan, r), r.status);
  GLMPIPE_CHECK(!serve || r.reported) << "mpirun exited with status " << r.status << " (the ranks' messages above say why)";
  set_exit_code(r.status);  // as if this process had been mpirun
}

// ranks[].max_memory at run time: the rank's resident memory (VmRSS, which counts mapped weight
// pages too) must stay within its budget; passing it stops the start-up with the plan's numbers
// beside the measured ones instead of running over.
void check_budget(const StagePlan& sp, int64_t rss, int64_t start_rss, const std::string& when) {
  const StageBytes& b = sp.bytes;
  if (rss <= b.budget) return;
  GLMPIPE_FAIL() << "rank " << sp.rank << " (" << sp.device << "): resident memory " << format_bytes(rss)
                 << " passed its max_memory " << format_bytes(b.budget) << " " << when << " (measured: rss " << rss
                 << " B, growth " << format_bytes(rss - start_rss) << " over " << format_bytes(start_rss)
                 << " before loading; plan: weights " << format_bytes(b.weights) << ", disk_window "
                 << format_bytes(b.disk_window) << ", kv_cache " << format_bytes(b.kv_cache) << ", activations "
                 << format_bytes(b.activations) << ", reserve " << format_bytes(b.reserve) << ", total "
                 << format_bytes(b.total) << " of max_memory " << format_bytes(b.budget)
                 << "); raise ranks[" << sp.rank << "].max_memory or its reserve, or give this rank less";
}

}  // namespace

std::unique_ptr<Session> Session::create(const SessionOptions& o, TokenCallback on_token) {
  std::unique_ptr<Session> s(new Session());
  s->dep_ = build_deployment(o);
  auto meta = load_model_metadata(s->dep_.model.path, s->dep_.model.dtype, s->dep_.model.quantization);
  if (s->dep_.kv_cache.max_seq_len <= 0) s->dep_.kv_cache.max_seq_len = meta.config.max_sequence_length;
  s->plan_ = make_plan(meta, s->dep_);
  const int stages = static_cast<int>(s->plan_.stages.size());
  if (launched_by_mpi()) {
    s->ctx_ = RankContext::from_mpi();
    s->mpi_ = true;
    init_logging(s->ctx_.rank(), s->ctx_.world(), s->ctx_.stage());
    install_failure_handlers(s->ctx_);
    GLMPIPE_CHECK(s->ctx_.world() == stages)
        << "started with " << s->ctx_.world() << " MPI ranks but the plan has " << stages
        << " stages (one rank per entry of `ranks:`" << (o.config.empty() ? "" : " in " + o.config) << ")";
  } else if (stages > 1 || o.dry_run) {
    run_mpirun(s->plan_, s->dep_, o.dry_run, o.supervise_mpirun);
    return nullptr;
  }
  if (const char* pid_dir = std::getenv("GLMPIPE_PID_DIR")) {  // for tests that kill a rank
    const std::string base = std::string(pid_dir) + "/rank" + std::to_string(s->ctx_.rank());
    std::ofstream(base + ".pid") << getpid() << "\n";
    char ns[128] = {0};  // network namespace, "net:[4026531840]": which "host" the rank ran on
    if (readlink("/proc/self/ns/net", ns, sizeof(ns) - 1) > 0) std::ofstream(base + ".netns") << ns << "\n";
  }
  const StagePlan& sp = s->plan_.stages.at(s->ctx_.rank());
  const bool cuda = sp.device.rfind("cuda", 0) == 0;
  if (cuda) {
    const CudaInfo ci = cuda_info();
    const int index = sp.device.rfind("cuda:", 0) == 0 ? std::stoi(sp.device.substr(5)) : 0;
    GLMPIPE_CHECK(ci.built) << "rank " << s->ctx_.rank() << " is placed on " << sp.device
                            << " but glmpipe was built without CUDA";
    GLMPIPE_CHECK(index < ci.devices) << "rank " << s->ctx_.rank() << " is placed on " << sp.device << " but "
                                      << (ci.devices == 0 ? "no GPU is present (" + ci.no_device + ")"
                                                          : std::to_string(ci.devices) + " CUDA device(s) are present");
  }
  // threads: 0 = this host's cores shared among its ranks (oversubscribed OpenMP threads spin-wait
  // on each other and run many times slower).
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  const int threads = sp.threads > 0 ? sp.threads : std::max(1, hw / std::max(1, s->ctx_.local_size()));
  at::set_num_threads(std::max(1, threads));
  const Duration liveness = std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s->dep_.mpi.liveness_timeout_s));
  if (stages > 1) {  // before loading: the host transport carries the reports
    TransportOptions to;
    to.timeout = liveness;  // every wait of the stage loop while work is in flight
    std::vector<std::string> devices;
    for (const auto& st : s->plan_.stages) devices.push_back(st.device);
    s->edges_ = StageEdges::build(s->ctx_, devices, to);  // collective when an edge uses NCCL
  }
  StartupReporter report(s->ctx_, s->edges_.host(), s->plan_, StartupReporter::stderr_is_terminal());
  RankStartup mine;
  mine.start_rss = s->start_rss_ = reset_memory_baseline();  // growth = VmHWM from here on minus this
  auto t0 = std::chrono::steady_clock::now();
  const bool guard = !cuda;  // a cuda rank's max_memory is device memory, not this process's RSS
  s->load_shard(sp, cuda, [&](const LoadProgress& p) {
    report.on_progress(p);
    if (guard) check_budget(sp, proc_status_bytes("VmRSS:"), mine.start_rss, "while loading its weights");
  });
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("stage {}: units {} (layers [{}, {})), {:.1f} MiB of weights loaded in {:.2f} s, {} threads",
               sp.rank, sp.units.size(), sp.layer_begin, sp.layer_end, s->loaded_bytes_ / 1048576.0, load_s,
               at::get_num_threads());
  RunnerOptions ro;
  ro.slots = s->plan_.max_batch;
  ro.max_seq = s->plan_.max_seq_len;
  ro.micro_batches = s->dep_.mpi.micro_batches > 0 ? s->dep_.mpi.micro_batches : stages;
  ro.prefill_chunk = s->dep_.kv_cache.prefill_chunk;
  ro.liveness_timeout = liveness;
  s->runner_ = std::make_unique<StageRunner>(s->ctx_, *s->shard_, s->edges_.view(), ro, std::move(on_token));
  mine.progress.tensors_done = mine.progress.tensors_total = s->loaded_tensors_;
  mine.progress.bytes_done = mine.progress.bytes_total = s->loaded_file_bytes_;
  mine.load_us = static_cast<int64_t>(load_s * 1e6);
  mine.peak_rss = s->load_peak_rss_ = proc_status_bytes("VmHWM:");  // weights and KV cache in place
  if (guard) check_budget(sp, mine.peak_rss, mine.start_rss, "once loaded with its KV cache (peak, VmHWM)");
  mine.loaded_bytes = s->loaded_bytes_;
  mine.threads = at::get_num_threads();
  report.finish(mine);  // rank 0: waits for every rank, prints the start-up summary
  if (stages > 1) {  // every rank gets here (collective): heartbeats from now until the end
    LivenessOptions lo;
    lo.timeout = liveness;
    for (const auto& st : s->plan_.stages) lo.hosts.push_back(st.host);  // names the host of a silent rank
    s->liveness_ = std::make_unique<LivenessMonitor>(s->ctx_, lo);
    s->runner_->set_liveness(s->liveness_.get());
  }
  return s;
}

void Session::load_shard(const StagePlan& sp, bool cuda, const LoadCallback& on_progress) {
  ckpt_ = std::make_unique<Checkpoint>(Checkpoint::open(dep_.model.path));
  ModelOptions mo;
  mo.dtype = compute_dtype(dep_.model.dtype, cuda);
  mo.device = cuda ? at::Device(sp.device) : at::Device(at::kCPU);
  const std::string& q = dep_.model.quantization;
  mo.quantize_bits = q == "int8" ? 8 : q == "int4" ? 4 : 0;
  ShardSpec spec{sp.has_embedding, sp.layer_begin, sp.layer_end, sp.has_head, {}};
  ModelConfig cfg = ckpt_->config();
  // The plan's disk units (names = the schema's unit names) -> unit indices; the final norm is
  // never on disk (norms stay resident).
  const ModelSchema schema = model_schema(cfg);
  for (const std::string& unit : sp.disk_units) {
    auto it = std::find(schema.units.begin(), schema.units.end(), unit);
    GLMPIPE_CHECK(it != schema.units.end()) << "plan: disk unit " << unit << " is not a module of this model";
    spec.disk_units.push_back(static_cast<int>(it - schema.units.begin()));
  }
  mo.offload_dir = dep_.disk.path;
  if (!dep_.model.rope_mode.empty()) {
    cfg.rope_mode = parse_rope_mode(dep_.model.rope_mode, "rope_mode");
    cfg.rope_mode_reason = "rope_mode in the deployment";
  }
  if (cfg.family != Family::kChatGLM && ctx_.rank() == 0)
    spdlog::info("model: {} family, {} layers, {} KV groups x {}, rope_ratio {} ({}: {})", family_name(cfg.family),
                 cfg.num_layers, cfg.kv_heads(), cfg.head_dim(), cfg.rope_ratio, rope_mode_name(cfg.rope_mode),
                 cfg.rope_mode_reason);
  shard_ = make_shard(cfg, spec, mo);
  LoadProgress last;
  try {
    shard_->load(*ckpt_, [&](const LoadProgress& p) {
      last = p;
      if (on_progress) on_progress(p);
    });
  } catch (const Error& e) {
    GLMPIPE_FAIL() << "rank " << ctx_.rank() << " loading stage " << sp.rank << " weights from " << dep_.model.path
                   << ": " << e.what();
  }
  loaded_tensors_ = last.tensors_done;
  loaded_file_bytes_ = last.bytes_done;
  loaded_bytes_ = shard_->parameter_bytes();
  if (!spec.disk_units.empty()) {
    const DiskWeights& d = shard_->disk();
    spdlog::info("disk tier: {} units on disk ({:.1f} MiB mapped, pages released after each use), {} converted "
                 "copies written{}{}",
                 spec.disk_units.size(), d.bytes() / 1048576.0, d.converted_units(),
                 d.offload_folder().empty() ? "" : " to ", d.offload_folder());
  }
}

void Session::run() {
  runner_->run();
  spdlog::info("{}", runner_->stats().summary(ctx_));
  const StageBytes& b = plan_.stages.at(ctx_.rank()).bytes;
  // One machine-readable line per rank: the per-rank memory test and bench_plan_accuracy compare it
  // with the plan (planned_resident = weights + disk_window + kv_cache: what a rank holds once
  // loaded; load_peak_rss = VmHWM at that point; peak_rss = VmHWM after the run).
  spdlog::info("memory: peak_rss {} start_rss {} planned_weights {} planned_kv {} planned_activations {} loaded_weights {} "
               "rank {} load_peak_rss {} planned_resident {} planned_disk_window {} budget {}",
               proc_status_bytes("VmHWM:"), start_rss_, b.weights, b.kv_cache, b.activations, loaded_bytes_, ctx_.rank(),
               load_peak_rss_, b.weights + b.disk_window + b.kv_cache, b.disk_window, b.budget);
}

Session::~Session() {
  // While unwinding an error, neither barrier nor finalize (both wait for the other ranks, one of
  // which may be the one that failed): main() logs the error and MPI_Aborts the job.
  const bool failing = std::uncaught_exceptions() > 0;
  runner_.reset();
  if (liveness_) liveness_->stop(/*goodbye=*/!failing);  // a rank that ends on purpose is not silent
  edges_.close(failing);  // failing: transports leaked, their destructors may wait on a dead peer
  if (failing) return;
  if (mpi_) finalize_mpi();
}

}  // namespace glmpipe
