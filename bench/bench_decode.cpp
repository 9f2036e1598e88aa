// Batch-1 decode on a ChatGLM-6B-shaped stack (hidden 4096, inner 16384, 32 heads, vocab 130528):
// ms/token, weight bytes read per token, the machine's read bandwidth measured in the same run
// (8-stream read over 1 GiB, bench/read_bandwidth.h), and the fraction of the bandwidth floor reached.
//
//   bench_decode [--layers L] [--threads T] [--steps N] [--formats fp32,bf16,int8,int4] [--prefill P]
//   bench_decode ... --context C   (decode steps start with C positions in the KV cache; default 4)
//   bench_decode --probe-only THREADS     (prints the best read GB/s and exits)
//
// Random weights fill the shard directly (no checkpoint I/O). The stack has L layers (memory);
// a 28-layer figure is extrapolated from the per-layer time and the lm_head time, both measured.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "bench/read_bandwidth.h"
#include "model/chatglm.h"
#include "model/qgemv.h"

using namespace glmpipe;
using Clock = std::chrono::steady_clock;

namespace {

double now_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

struct Result {
  std::string fmt;
  double ms_token, ms_layer, ms_head, bytes_token28, resident_gb;
  double prefill_ms_token = 0;  // 28-layer extrapolation of one prompt's prefill, per prompt token
};

int g_prefill = 128;  // prompt length of the prefill measurement (0: skip)
int g_context = 4;    // positions already in the KV cache when the timed decode steps start

// Prefill of one g_prefill-token prompt (blocks only, median of 3), per layer, ms.
double prefill_ms_per_layer(const ChatGLMShard& shard, int layers) {
  if (g_prefill <= 0) return 0;
  auto ids = at::randint(0, 130000, {g_prefill}, at::kLong);
  ids[g_prefill - 2] = 130001;  // [gMASK]
  ids[g_prefill - 1] = 130004;  // <sop>
  SeqChunk s{0, 0, g_prefill, g_prefill - 1, g_prefill - 2};
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

Result run(const std::string& fmt, int layers, int steps) {
  ModelConfig c;  // ChatGLM-6B defaults
  c.num_layers = layers;
  ModelOptions mo;
  mo.dtype = fmt == "fp32" ? at::kFloat : at::kBFloat16;  // bf16: weights + KV cache (CPU computes in fp32)
  // int8/int4: quantized block weights, bf16 lm_head and KV cache, fp32 activations
  ChatGLMShard shard(c, ShardSpec::whole(c), mo);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  for (auto& [name, t] : shard.named_parameters()) {
    std::vector<int64_t> shape;
    if (name.find("word_embeddings") != std::string::npos) shape = {c.vocab_size, c.hidden_size};
    else if (name.find("query_key_value.weight") != std::string::npos) shape = {3 * c.hidden_size, c.hidden_size};
    else if (name.find("query_key_value.bias") != std::string::npos) shape = {3 * c.hidden_size};
    else if (name.find("dense_h_to_4h.weight") != std::string::npos) shape = {c.inner_hidden_size, c.hidden_size};
    else if (name.find("dense_h_to_4h.bias") != std::string::npos) shape = {c.inner_hidden_size};
    else if (name.find("dense_4h_to_h.weight") != std::string::npos) shape = {c.hidden_size, c.inner_hidden_size};
    else if (name.find("attention.dense.weight") != std::string::npos) shape = {c.hidden_size, c.hidden_size};
    else shape = {c.hidden_size};
    *t = (at::randn(shape, gen) * 0.02).to(mo.dtype);
    if (name.find("layernorm.weight") != std::string::npos) t->fill_(1.0);
  }
  if (fmt == "int8") shard.quantize_linears(8);
  if (fmt == "int4") shard.quantize_linears(4);
  const double resident = shard.parameter_bytes() / 1e9;
  auto cache = shard.make_cache(1, std::max(256, g_context + steps + 8));
  // prompt of 4 tokens, then timed one-token steps
  std::vector<int64_t> prompt = {5, 74874, 130001, 130004};
  SeqChunk s{0, 0, 4, 3, 2};
  auto h = shard.forward_blocks(shard.embed(at::tensor(prompt, at::kLong)), {s}, cache);
  int64_t tok = shard.head(h.narrow(0, 3, 1)).argmax(1).item<int64_t>();
  s.past = std::max(4, g_context);  // positions 4.. hold zeros: attention costs the same as with real keys
  s.len = 1;
  std::vector<double> step_ms, head_ms;
  for (int i = 0; i < steps; ++i) {
    double t0 = now_s();
    auto x = shard.forward_blocks(shard.embed(at::tensor({tok}, at::kLong)), {s}, cache);
    double t1 = now_s();
    tok = shard.head(x).argmax(1).item<int64_t>();
    double t2 = now_s();
    step_ms.push_back((t2 - t0) * 1e3);
    head_ms.push_back((t2 - t1) * 1e3);
    s.past += 1;
  }
  std::sort(step_ms.begin(), step_ms.end());
  std::sort(head_ms.begin(), head_ms.end());
  const double prefill_layer_ms = prefill_ms_per_layer(shard, layers);
  const double med = step_ms[steps / 2], head = head_ms[steps / 2];
  const double per_layer = (med - head) / layers;
  // bytes per token for the real 28-layer model: block weights (+ scales) + lm_head
  ChatGLMShard one(c, ShardSpec{false, 0, 1, false}, mo);
  int64_t layer_bytes = 0;
  {
    const double wb = fmt == "fp32" ? 4 : fmt == "bf16" ? 2 : fmt == "int8" ? 1 : 0.5;
    const int64_t H = c.hidden_size, I = c.inner_hidden_size;
    const int64_t wparams = 3 * H * H + H * H + 2 * H * I;
    const int64_t rows = 3 * H + H + I + H;
    layer_bytes = static_cast<int64_t>(wparams * wb) + rows * (mo.dtype == at::kFloat ? 4 : 2) * (fmt == "int8" || fmt == "int4" ? 2 : 1);
  }
  const double head_bytes = double(c.vocab_size) * c.hidden_size * (mo.dtype == at::kFloat ? 4 : 2);
  Result r;
  r.fmt = fmt;
  r.ms_layer = per_layer;
  r.ms_head = head;
  r.ms_token = per_layer * 28 + head;
  r.bytes_token28 = layer_bytes * 28.0 + head_bytes;
  r.resident_gb = resident;
  r.prefill_ms_token = prefill_layer_ms * 28 / std::max(g_prefill, 1);
  std::fprintf(stderr, "  %s: %d-layer step median %.1f ms (head %.1f ms)\n", fmt.c_str(), layers, med, head);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int layers = 2, threads = 2, steps = 8;
  std::string formats = "fp32,bf16,int8,int4";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--layers") layers = std::atoi(argv[i + 1]);
    else if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--steps") steps = std::atoi(argv[i + 1]);
    else if (a == "--formats") formats = argv[i + 1];
    else if (a == "--prefill") g_prefill = std::atoi(argv[i + 1]);
    else if (a == "--context") g_context = std::atoi(argv[i + 1]);
    else if (a == "--probe-only") {  // the read ceiling alone (bench/compare_peer.sh), GB/s on stdout
      const auto b = bench::measure_read_bandwidth(std::atoi(argv[i + 1]));
      std::printf("%.1f\n", b.best_gbs);
      return 0;
    }
  }
  at::set_num_threads(threads);
  std::time_t t = std::time(nullptr);
  char date[64];
  std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  // The read ceiling is measured before and after every format and the best round of all is the
  // floor: on this shared VM one probe can land in a slow moment and flatter every ratio.
  std::vector<Result> results;
  bench::Bandwidth bwm = bench::measure_read_bandwidth(threads);
  double bw = bwm.best_gbs;
  std::vector<double> probes{bwm.best_gbs};
  size_t pos = 0;
  while (pos < formats.size()) {
    size_t e = formats.find(',', pos);
    std::string f = formats.substr(pos, e == std::string::npos ? std::string::npos : e - pos);
    pos = e == std::string::npos ? formats.size() : e + 1;
    results.push_back(run(f, layers, steps));
    bwm = bench::measure_read_bandwidth(threads);
    probes.push_back(bwm.best_gbs);
    bw = std::max(bw, bwm.best_gbs);
  }
  std::printf("## bench_decode %s, %d threads, kernels %s, %d measured layers, %d steps, context %d\n\n", date,
              threads, gemv_kernel_isa().c_str(), layers, steps, std::max(4, g_context));
  std::printf("read bandwidth (1 GiB, 8 streams per thread, best of 5 rounds, probed before and after each format):");
  for (double p : probes) std::printf(" %.1f", p);
  std::printf(" GB/s; floor = bytes / %.1f GB/s (the best)\n\n", bw);
  std::printf("| format | GB read/token (28 layers + lm_head) | ms/token (28 layers, extrapolated) | floor ms | fraction of floor | resident GB (%d layers + emb) | prefill ms/prompt token (%d-token prompt, 28 layers) |\n|---|---|---|---|---|---|---|\n", layers, g_prefill);
  for (const Result& r : results) {
    const double floor_ms = r.bytes_token28 / (bw * 1e9) * 1e3;
    std::printf("| %s | %.2f | %.0f | %.0f | %.2f | %.2f | %.0f |\n", r.fmt.c_str(), r.bytes_token28 / 1e9, r.ms_token,
                floor_ms, floor_ms / r.ms_token, r.resident_gb, r.prefill_ms_token);
  }
  return 0;
}
