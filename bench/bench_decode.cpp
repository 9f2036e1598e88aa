// Batch-1 decode of a full-size ChatGLM-family stack: ms/token, weight bytes read per token, the
// machine's read bandwidth measured in the same run (8-stream read over 1 GiB,
// bench/read_bandwidth.h), and the fraction of the bandwidth floor reached: against the best probe of
// the run (before and after every shape × format) and against the median of short probes taken right
// before each timed step (the ceiling at that moment: a shared VM's bandwidth moves by tens of percent
// within minutes).
//
//   bench_decode [--shape chatglm-6b|chatglm3-6b|glm4-9b[,…]] [--layers L] [--threads T] [--steps N]
//                [--formats fp32,bf16,int8,int4] [--prefill P] [--context C]
//   bench_decode --probe-only THREADS     (prints the best read GB/s and exits)
//
// Shapes (the official config.json of each model):
//   chatglm-6b   v1: 28 layers, hidden 4096, 32 heads (no KV groups), MLP 16384, vocab 130528, tied head
//   chatglm3-6b  v2: 28 layers, hidden 4096, 32 heads, 2 KV groups of 128, MLP 13696, vocab 65024
//   glm4-9b      v2: 40 layers, hidden 4096, 32 heads, 2 KV groups of 128, MLP 13696, vocab 151552
// Random weights fill the shard from the family's tensor schema (no checkpoint I/O). The measured
// stack has L layers (memory); the full model's figure is extrapolated from the per-layer time and
// the head time, both measured. Bytes per token are the resident bytes of one block (weights,
// scales, biases, norms, as the shard holds them) × layers + the head matrix.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "bench/read_bandwidth.h"
#include "model/model.h"
#include "model/qgemv.h"
#include "model/tiny_model.h"

using namespace glmpipe;
using Clock = std::chrono::steady_clock;

namespace {

double now_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

struct Shape {
  std::string name;
  ModelConfig config;  // num_layers = the real model's
};

Shape make_shape(const std::string& name) {
  if (name == "chatglm-6b") return {name, ModelConfig{}};  // ModelConfig's defaults are ChatGLM-6B's
  TinyModelOptions o;
  o.family = name == "glm4-9b" ? TinyFamily::kGLM4 : TinyFamily::kChatGLM2;
  o.layers = name == "glm4-9b" ? 40 : 28;
  o.hidden = 4096;
  o.heads = 32;
  o.kv_groups = 2;
  o.kv_channels = 128;
  o.inner = 13696;
  o.vocab = name == "glm4-9b" ? 151552 : 65024;
  if (name != "glm4-9b" && name != "chatglm3-6b") {
    std::fprintf(stderr, "bench_decode: --shape %s (allowed: chatglm-6b, chatglm3-6b, glm4-9b)\n", name.c_str());
    std::exit(1);
  }
  ModelConfig c = tiny_model_config(o);
  c.max_sequence_length = name == "glm4-9b" ? 131072 : 8192;  // the official seq_length
  return {name, c};
}

struct Result {
  std::string shape, fmt;
  int layers_full = 0;
  double ms_token = 0, bytes_token = 0, resident_gb = 0;
  double prefill_ms_token = 0;  // full-model extrapolation of one prompt's prefill, per prompt token
  double local_gbs = 0;         // median of the read probes taken between the timed steps
};

int g_prefill = 128;  // prompt length of the prefill measurement (0: skip)
int g_context = 4;    // positions already in the KV cache when the timed decode steps start

ModelOptions options_for(const std::string& fmt) {
  ModelOptions mo;
  // bf16: weights + KV cache (CPU computes in fp32); int8/int4: quantized block weights, bf16
  // head and KV cache, fp32 activations
  mo.dtype = fmt == "fp32" ? at::kFloat : at::kBFloat16;
  return mo;
}

// Fills every parameter from the schema's shape (norm weights 1, the rest N(0, 0.02)) and
// quantizes the block Linears for int8/int4.
void fill_random(Shard& shard, const std::string& fmt) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const ModelSchema& schema = shard.schema();
  for (auto& [name, t] : shard.named_parameters()) {
    const TensorSpec* spec = schema.find(name);
    if (!spec) continue;
    *t = (at::randn(spec->shape, gen) * 0.02).to(shard.options().dtype);
    if (schema.param_of(*spec).kind == ParamKind::kNorm && name.find(".weight") != std::string::npos) t->fill_(1.0);
  }
  if (fmt == "int8") shard.quantize_linears(8);
  if (fmt == "int4") shard.quantize_linears(4);
}

// A prompt of n ids with the family's layout (v1: [gMASK] <sop> at the end).
std::pair<at::Tensor, SeqChunk> prompt(const ModelConfig& c, int64_t n) {
  auto ids = at::randint(0, std::min<int64_t>(c.vocab_size, 60000), {n}, at::kLong);
  if (c.gmask_token_id >= 0) {
    ids[n - 2] = c.gmask_token_id;
    ids[n - 1] = c.bos_token_id;
  }
  std::vector<int64_t> v(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + n);
  const PromptLayout p = prompt_layout(c, v);
  return {ids, SeqChunk{0, 0, n, p.ctx_len, p.mask_pos}};
}

// Prefill of one g_prefill-token prompt (blocks only, median of 3), per layer, ms.
double prefill_ms_per_layer(const Shard& shard, int layers) {
  if (g_prefill <= 0) return 0;
  auto [ids, s] = prompt(shard.config(), g_prefill);
  std::vector<double> ms;
  for (int i = 0; i < 3; ++i) {
    auto cache = shard.make_cache(1, g_prefill + 1);
    auto e = shard.embed(ids);
    const double t0 = now_s();
    shard.forward_blocks(e, {s}, cache);
    ms.push_back((now_s() - t0) * 1e3);
  }
  std::sort(ms.begin(), ms.end());
  return ms[1] / layers;
}

// Resident bytes of one block in this format (what a decode step reads per layer).
int64_t block_bytes(const ModelConfig& full, const std::string& fmt) {
  ModelConfig c = full;
  c.num_layers = 1;
  auto one = make_shard(c, ShardSpec{false, 0, 1, false, {}}, options_for(fmt));
  fill_random(*one, fmt);
  return one->parameter_bytes();
}

Result run(const Shape& shape, const std::string& fmt, int layers, int steps, int threads) {
  ModelConfig c = shape.config;
  const int layers_full = static_cast<int>(c.num_layers);
  c.num_layers = layers;
  auto shard = make_shard(c, ShardSpec::whole(c), options_for(fmt));
  fill_random(*shard, fmt);
  const double resident = shard->parameter_bytes() / 1e9;
  auto cache = shard->make_cache(1, std::max(256, g_context + steps + 8));
  // a 4-token prompt, then timed one-token steps
  auto [ids, s] = prompt(c, 4);
  auto h = shard->forward_blocks(shard->embed(ids), {s}, cache);
  int64_t tok = shard->head(h.narrow(0, 3, 1)).argmax(1).item<int64_t>();
  s.past = std::max(4, g_context);  // positions 4.. hold zeros: attention costs the same as with real keys
  s.len = 1;
  std::vector<double> step_ms, head_ms, local;
  for (int i = 0; i < steps; ++i) {
    // The host's read bandwidth moves by tens of percent within minutes on a shared VM: a short
    // probe (1 GiB, one round after a warm-up) before each step gives the ceiling at that moment.
    local.push_back(bench::measure_read_bandwidth(threads, 1).best_gbs);
    const double t0 = now_s();
    auto x = shard->forward_blocks(shard->embed(at::tensor({tok}, at::kLong)), {s}, cache);
    const double t1 = now_s();
    tok = shard->head(x).argmax(1).item<int64_t>();
    const double t2 = now_s();
    step_ms.push_back((t2 - t0) * 1e3);
    head_ms.push_back((t2 - t1) * 1e3);
    s.past += 1;
  }
  std::sort(step_ms.begin(), step_ms.end());
  std::sort(head_ms.begin(), head_ms.end());
  const double med = step_ms[steps / 2], head = head_ms[steps / 2];
  const double per_layer = (med - head) / layers;
  const double head_bytes = double(c.vocab_size) * c.hidden_size * (options_for(fmt).dtype == at::kFloat ? 4 : 2);
  Result r;
  r.shape = shape.name;
  r.fmt = fmt;
  r.layers_full = layers_full;
  r.ms_token = per_layer * layers_full + head;
  r.bytes_token = double(block_bytes(shape.config, fmt)) * layers_full + head_bytes;
  r.resident_gb = resident;
  std::sort(local.begin(), local.end());
  r.local_gbs = local[local.size() / 2];
  r.prefill_ms_token = prefill_ms_per_layer(*shard, layers) * layers_full / std::max(g_prefill, 1);
  std::fprintf(stderr, "  %s %s: %d-layer step median %.1f ms (head %.1f ms)\n", shape.name.c_str(), fmt.c_str(),
               layers, med, head);
  return r;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t e = s.find(',', pos);
    out.push_back(s.substr(pos, e == std::string::npos ? std::string::npos : e - pos));
    if (e == std::string::npos) break;
    pos = e + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int layers = 2, threads = 2, steps = 8;
  std::string formats = "fp32,bf16,int8,int4", shapes = "chatglm-6b";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--layers") layers = std::atoi(argv[i + 1]);
    else if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--steps") steps = std::atoi(argv[i + 1]);
    else if (a == "--formats") formats = argv[i + 1];
    else if (a == "--shape") shapes = argv[i + 1];
    else if (a == "--prefill") g_prefill = std::atoi(argv[i + 1]);
    else if (a == "--context") g_context = std::atoi(argv[i + 1]);
    else if (a == "--probe-only") {  // the read ceiling alone (bench/compare_peer.sh), GB/s on stdout
      const auto b = bench::measure_read_bandwidth(std::atoi(argv[i + 1]));
      std::printf("%.1f\n", b.best_gbs);
      return 0;
    } else {
      std::fprintf(stderr, "bench_decode: unknown option %s\n", a.c_str());
      return 1;
    }
  }
  std::vector<Shape> shape_list;
  for (const std::string& s : split_commas(shapes)) shape_list.push_back(make_shape(s));
  at::set_num_threads(threads);
  const std::time_t t = std::time(nullptr);
  char date[64];
  std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  // The read ceiling is measured before and after every run and the best round of all is the
  // floor: on a shared VM one probe can land in a slow moment and flatter every ratio.
  std::vector<Result> results;
  double bw = bench::measure_read_bandwidth(threads).best_gbs;
  std::vector<double> probes{bw};
  for (const Shape& shape : shape_list)
    for (const std::string& f : split_commas(formats)) {
      results.push_back(run(shape, f, layers, steps, threads));
      probes.push_back(bench::measure_read_bandwidth(threads).best_gbs);
      bw = std::max(bw, probes.back());
    }
  std::printf("## bench_decode %s, %d threads, kernels %s, %d measured layers, %d steps, context %d\n\n", date,
              threads, gemv_kernel_isa().c_str(), layers, steps, std::max(4, g_context));
  std::printf("read bandwidth (1 GiB, 8 streams per thread, best of 5 rounds, probed before and after each run):");
  for (double p : probes) std::printf(" %.1f", p);
  std::printf(" GB/s; floor = bytes / %.1f GB/s (the best)\n\n", bw);
  std::printf("| shape | format | GB read/token (all layers + head) | ms/token (extrapolated) | floor ms | fraction of floor "
              "| probes between steps GB/s (median) | fraction of their floor "
              "| resident GB (%d layers + emb + head) | prefill ms/prompt token (%d-token prompt) |\n"
              "|---|---|---|---|---|---|---|---|---|---|\n",
              layers, g_prefill);
  for (const Result& r : results) {
    const double floor_ms = r.bytes_token / (bw * 1e9) * 1e3, local_ms = r.bytes_token / (r.local_gbs * 1e9) * 1e3;
    std::printf("| %s (%d layers) | %s | %.2f | %.0f | %.0f | %.2f | %.1f | %.2f | %.2f | %.0f |\n", r.shape.c_str(),
                r.layers_full, r.fmt.c_str(), r.bytes_token / 1e9, r.ms_token, floor_ms, floor_ms / r.ms_token,
                r.local_gbs, local_ms / r.ms_token, r.resident_gb, r.prefill_ms_token);
  }
  return 0;
}
