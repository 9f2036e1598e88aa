// Deployment: one YAML file describing where a ChatGLM pipeline runs, as plain structs with in-class
// defaults. Parsed (and validated) only by planner/deployment_yaml.cpp, the one translation unit that
// includes yaml-cpp; everything downstream receives this aggregate.
//
//   model: {path: /models/chatglm-6b, dtype: float16}      # quantization: int8 | int4 (optional)
//   ranks:                                                  # pipeline order, one process each
//     - {device: cuda:0, max_memory: 14GiB}
//     - {device: cpu, max_memory: 30GiB, threads: 16}
//   # or accelerate's form instead of (or besides) ranks[].max_memory; without ranks: it lists them:
//   # max_memory: {0: 14GiB, cpu: 30GiB}                     # GPU index (cuda:N) or cpu -> size
//   placement: balanced          # auto | balanced | balanced_low_0 | sequential | balanced_work | map:
//   # placement: {"": cpu} | {transformer: 0, lm_head: 1} | {transformer.layers.3: disk, ...}
//   #   (accelerate's device_map: module prefix -> rank index, device of one rank, or disk)
//   kv_cache: {max_batch: 1, max_seq_len: 2048}
//   reserve: {gpu: 1.5GiB, cpu: 1GiB}                       # or gpu_reserve: / cpu_reserve:
//   disk: {path: /nvme/offload}   # enables the disk tier; path = accelerate's offload_folder (converted
//                                 # copies of disk units whose stored dtype is not the compute dtype)
//   generation: {max_tokens: 256, temperature: 0.95, top_p: 0.7, top_k: 50, stop: ["\n\n"], ...}
//   mpi: {hostfile: hosts, bind_to_core: false, micro_batches: 0, liveness_timeout_s: 60, extra_args: [...],
//         btl: [self, vader, tcp], tcp_if_include: [10.0.0.0/24], mca: {plm_rsh_agent: ssh}}
//
// Sizes are bytes: plain integers or "14GiB", "15GB", "512MiB", "1.5GiB" (binary and decimal units).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/sampling_params.h"

namespace glmpipe {

constexpr int64_t kGiB = int64_t{1} << 30;
constexpr int64_t kMiB = int64_t{1} << 20;

// One pipeline process.
struct RankSpec {
  std::string device = "cpu";  // "cuda:N" | "cpu"
  int64_t max_memory = 0;      // bytes this process may use on `device` (its budget), required
  int threads = 0;             // CPU threads for this process; 0 = all cores
  std::string host;            // hostname for multi-node runs ("" = this machine); ranks of one
                               // host must be contiguous (mpirun maps ranks to hosts in order)
  int64_t reserve = -1;        // bytes kept free on the device; -1 = the deployment's gpu/cpu_reserve

  bool is_cuda() const { return device.rfind("cuda:", 0) == 0; }
  bool is_cpu() const { return device == "cpu"; }
};

struct ModelSpec {
  std::string path;                // HF ChatGLM-6B directory (or one with only config.json for `plan`)
  std::string dtype = "float16";   // compute/storage dtype of float tensors: float32|float16|bfloat16
  std::string quantization;        // "" | "int8" | "int4" (weight-only, the four Linear layers per block)
  // ChatGLM2/3, GLM-4 with rope_ratio != 1: "" (decide from the checkpoint, model/model_config.h) |
  // "base_scale" | "position_interpolation". YAML: the top-level key `rope_mode:`.
  std::string rope_mode;
};

struct KvCacheSpec {
  int64_t max_batch = 1;       // sequences decoded together
  int64_t max_seq_len = 2048;  // prompt + generated tokens per sequence
  // Prompt tokens per micro-batch and sequence for causal families (ChatGLM2/3, GLM-4): a long
  // prompt is prefilled in chunks, so its activations scale with the chunk, not the prompt
  // (stage/scheduler.h). 0 = whole prompts. ChatGLM-6B (v1) always prefills whole.
  int64_t prefill_chunk = 512;
};

struct DiskSpec {
  bool enabled = false;  // true when `disk:` is present
  std::string path;      // where offloaded weights live (the checkpoint itself is mmapped when empty)
};

// `generation:` takes the request fields of common/sampling_params.h (the HTTP names; checked by
// the same validator). Defaults: HF `chat` (chatglm-spec §1.9), max_new_tokens 0 = only max_length
// limits the output.
inline SamplingParams hf_chat_generation_defaults() {
  SamplingParams p;
  p.max_new_tokens = 0;
  return p;
}

struct MpiSpec {
  std::vector<std::string> extra_args;  // appended to the mpirun line verbatim
  std::string hostfile;                 // Open MPI hostfile (see configs/hostfile.example)
  // Byte transports (`--mca btl a,b,c`); empty: self,vader on one host, self,vader,tcp across hosts
  // (shared memory within a host, TCP between hosts).
  std::vector<std::string> btl;
  // Extra MCA parameters in file order, each passed as `--mca NAME VALUE`
  // (e.g. plm_rsh_agent, btl_tcp_if_include, oob_tcp_if_include).
  std::vector<std::pair<std::string, std::string>> mca;
  // Interfaces or subnets ("eth1", "10.0.0.0/24") the TCP transport and mpirun's own control
  // channel use: sets btl_tcp_if_include and oob_tcp_if_include unless `mca` sets them.
  std::vector<std::string> tcp_if_include;
  bool bind_to_core = false;
  int micro_batches = 0;                // 0 = one per stage
  // A rank silent this long (no heartbeat, or no reply while work is in flight) ends the job
  // (comm/liveness.h). An idle pipeline is not a stall. --liveness-timeout overrides it.
  double liveness_timeout_s = 60;
};

// The tokenizer file and chat family (model/chat/chat_family.h); both optional:
//   tokenizer: {path: /models/glm-4-9b-chat/tokenizer.model, chat_family: glm4}
struct TokenizerSpec {
  std::string path;         // "" = MODEL_DIR/tokenizer.model, else MODEL_DIR/ice_text.model
  std::string chat_family;  // "" = from the checkpoint's files | chatglm | chatglm2 | chatglm3 | glm4
};

struct Deployment {
  std::string source_file;  // where it was read from (error messages)
  ModelSpec model;
  std::vector<RankSpec> ranks;
  std::string placement = "balanced";  // auto | balanced | balanced_low_0 | sequential | balanced_work | map
  // placement == "map": accelerate-style module prefixes ("" = everything) -> rank index ("0"),
  // device ("cuda:0", "cpu") or "disk", in file order, e.g. {"transformer.layers.0-20", "0"}.
  // Validated by make_plan (plan_map.cpp).
  std::vector<std::pair<std::string, std::string>> placement_map;
  KvCacheSpec kv_cache;
  int64_t gpu_reserve = 3 * kGiB / 2;  // CUDA context, cuBLAS workspace, allocator fragmentation
  int64_t cpu_reserve = kGiB;          // process, libtorch, MPI buffers
  DiskSpec disk;
  SamplingParams generation = hf_chat_generation_defaults();
  MpiSpec mpi;
  TokenizerSpec tokenizer;

  // Reserve that applies to ranks[i] (its own override or the gpu/cpu default).
  int64_t reserve_of(size_t i) const {
    const RankSpec& r = ranks.at(i);
    if (r.reserve >= 0) return r.reserve;
    return r.is_cuda() ? gpu_reserve : cpu_reserve;
  }
};

// Reads and validates a deployment file. Errors name the file, the key and what is allowed.
Deployment load_deployment(const std::string& yaml_path);
Deployment parse_deployment(const std::string& yaml_text, const std::string& source_name);

// "14GiB" | "15GB" | "512MiB" | "1.5GiB" | "123" -> bytes. Throws glmpipe::Error naming `what`.
int64_t parse_byte_size(const std::string& text, const std::string& what);
// 1610612736 -> "1.50 GiB" (for tables and messages).
std::string format_bytes(int64_t bytes);

}  // namespace glmpipe
