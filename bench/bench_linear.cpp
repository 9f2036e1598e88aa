// Decode-shaped Linear kernels on ChatGLM-6B shapes: memory read bandwidth (1 GiB sum), per-call time
// and GB/s of weight bytes for each weight format/kernel at 1 and 2 threads, batch 1; a per-token
// estimate (28 layers × 4 linears + lm_head) against the bandwidth floor; and the batch crossover
// between the row kernels and dequantize+GEMM. Prints markdown to stdout.
//
//   bench_linear [--quick] [--rounds N] [--isa avx512|avx2|portable]
// Each figure is the median (and best) over rounds; every round cycles through enough copies of the
// weight (≥ 512 MiB in total) that no call finds it in cache.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "bench/read_bandwidth.h"
#include "model/linear.h"
#include "model/qgemv.h"
#include "model/quant.h"

using namespace glmpipe;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Stat {
  double median = 0, best = 0;
};

Stat stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front()};
}

struct LayerShape {
  const char* name;
  int64_t out, in;
};
const LayerShape kLayers[] = {{"qkv", 12288, 4096}, {"dense", 4096, 4096}, {"h_to_4h", 16384, 4096},
                              {"4h_to_h", 4096, 16384}};
const LayerShape kLmHead = {"lm_head", 130528, 4096};

enum class Impl { kF32Addmv, kF32Gemv, kBF16Linear, kBF16Gemv, kInt8, kInt4 };
const char* impl_name(Impl i) {
  switch (i) {
    case Impl::kF32Addmv: return "fp32 addmv (OpenBLAS sgemv)";
    case Impl::kF32Gemv: return "fp32 row kernel";
    case Impl::kBF16Linear: return "bf16 at::linear (oneDNN)";
    case Impl::kBF16Gemv: return "bf16 row kernel";
    case Impl::kInt8: return "int8 row kernel";
    case Impl::kInt4: return "int4 row kernel";
  }
  return "?";
}

LinearWeight make_weight(Impl impl, int64_t out, int64_t in) {
  LinearWeight w;
  w.in_features = in;
  w.out_features = out;
  w.bias = at::randn({out}) * 0.01;
  switch (impl) {
    case Impl::kF32Addmv:
    case Impl::kF32Gemv: w.weight = at::randn({out, in}) * 0.02; break;
    case Impl::kBF16Linear:
    case Impl::kBF16Gemv: w.weight = (at::randn({out, in}) * 0.02).to(at::kBFloat16); w.bias = w.bias.to(at::kBFloat16); break;
    case Impl::kInt8: w.weight = at::randint(-127, 128, {out, in}, at::kChar); w.bits = 8; break;
    case Impl::kInt4: w.weight = at::randint(-128, 128, {out, in / 2}, at::kChar); w.bits = 4; break;
  }
  if (w.bits) w.scale = at::rand({out}) * 0.001 + 1e-4;
  return w;
}

at::Tensor call(Impl impl, const at::Tensor& x, const LinearWeight& w) {
  switch (impl) {
    case Impl::kF32Gemv: return gemv_forward(x, w.weight, WeightFormat::kF32, at::Tensor(), w.bias);
    case Impl::kBF16Linear: return at::linear(x, w.weight, w.bias);
    default: return linear_forward(x, w);
  }
}

at::ScalarType act_dtype(Impl impl) {
  return impl == Impl::kBF16Linear ? at::kBFloat16 : at::kFloat;
}

// Per-call seconds of `fn(copy)` cycling over `copies` weights, median/best over rounds.
Stat time_calls(const std::function<void(int)>& fn, int copies, int rounds) {
  const int calls = std::max(copies, 8);
  for (int i = 0; i < copies; ++i) fn(i);  // warm-up: page in every copy
  std::vector<double> per;
  for (int r = 0; r < rounds; ++r) {
    const double t0 = now_s();
    for (int i = 0; i < calls; ++i) fn(i % copies);
    per.push_back((now_s() - t0) / calls);
  }
  return stats(per);
}

int copies_for(int64_t bytes) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(64, ((int64_t(512) << 20) + bytes - 1) / bytes)));
}

std::string cpu_model() {
  FILE* f = popen("lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1", "r");
  char buf[256] = {0};
  if (f) {
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    pclose(f);
  }
  std::string s(buf);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s.empty() ? "unknown" : s;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int rounds = 7;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--isa") && i + 1 < argc) {  // force one kernel family (avx512|avx2|portable)
      const std::string want = argv[++i];
      for (KernelIsa k : {KernelIsa::kPortable, KernelIsa::kAvx2, KernelIsa::kAvx512})
        if (want == kernel_isa_name(k)) force_kernel_isa(k);
    }
  }
  if (quick) rounds = 3;
  char date[64];
  std::time_t t = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  std::printf("# bench_linear — %s — %s, %d rounds (median / best), row kernels: %s\n\n", date,
              cpu_model().c_str(), rounds, gemv_kernel_isa().c_str());

  // (a) bandwidth
  std::map<int, Stat> bw;
  std::printf("## Memory read bandwidth (1 GiB fp32, 8 streams per thread; see bench/read_bandwidth.h)\n\n| threads | median GB/s | best GB/s |\n|---|---|---|\n");
  for (int th : {1, 2}) {
    const auto b = bench::measure_read_bandwidth(th, rounds);
    bw[th] = {b.median_gbs, b.best_gbs};
    std::printf("| %d | %.1f | %.1f |\n", th, bw[th].median, bw[th].best);
  }
  std::fflush(stdout);

  // (b) per-layer kernels, batch 1
  const Impl impls[] = {Impl::kF32Addmv, Impl::kF32Gemv, Impl::kBF16Linear, Impl::kBF16Gemv, Impl::kInt8, Impl::kInt4};
  std::vector<LayerShape> shapes(std::begin(kLayers), std::end(kLayers));
  shapes.push_back(kLmHead);
  std::map<std::pair<int, std::string>, Stat> ms;  // (impl, shape) → ms per call at 2 threads
  std::map<std::pair<int, std::string>, double> bytes_of;
  std::printf("\n## Batch 1, per call (weight bytes / time)\n\n| kernel | shape (out×in) | MB | 1 thr ms | 1 thr GB/s | 2 thr ms (median/best) | 2 thr GB/s (median) | 2 thr fraction of read bw |\n|---|---|---|---|---|---|---|---|\n");
  for (Impl impl : impls) {
    for (const auto& s : shapes) {
      const bool lm = std::string(s.name) == "lm_head";
      if (lm && (impl == Impl::kInt8 || impl == Impl::kInt4)) continue;  // lm_head stays float
      const int64_t bytes = make_weight(impl, 1, s.in).weight_bytes() * s.out;  // approx: per-row bytes × rows
      const int copies = copies_for(bytes);
      std::vector<LinearWeight> ws;
      for (int i = 0; i < copies; ++i) ws.push_back(make_weight(impl, s.out, s.in));
      const double wb = static_cast<double>(ws[0].weight_bytes());
      auto x = at::randn({1, s.in}).to(act_dtype(impl));
      Stat st[3];
      for (int th : {1, 2}) {
        at::set_num_threads(th);
        st[th] = time_calls([&](int i) { call(impl, x, ws[i]); }, copies, quick && th == 1 ? 2 : rounds);
      }
      ms[{int(impl), s.name}] = {st[2].median * 1e3, st[2].best * 1e3};
      bytes_of[{int(impl), s.name}] = wb;
      std::printf("| %s | %s %ld×%ld | %.0f | %.2f | %.1f | %.2f / %.2f | %.1f | %.2f |\n", impl_name(impl), s.name,
                  long(s.out), long(s.in), wb / 1e6, st[1].median * 1e3, wb / st[1].median / 1e9, st[2].median * 1e3,
                  st[2].best * 1e3, wb / st[2].median / 1e9, wb / st[2].median / 1e9 / bw[2].best);
      std::fflush(stdout);
    }
  }

  // (c) per-token estimate, 2 threads
  struct Model {
    const char* name;
    Impl linear, head;
    double cpp_ms;    // chatglm.cpp, 2 threads, on the Zen 4 of ../shared/docs/performance-targets.md
    double cpp_frac;  // ... and its fraction of that machine's floor (44 GB/s)
    const char* cpp_fmt;
  };
  const Model models[] = {{"fp32", Impl::kF32Addmv, Impl::kF32Addmv, 0, 0, "-"},
                          {"fp32 (row kernel)", Impl::kF32Gemv, Impl::kF32Gemv, 0, 0, "-"},
                          {"bf16 (at::linear)", Impl::kBF16Linear, Impl::kBF16Linear, 320, 0.88, "f16"},
                          {"bf16 (row kernel)", Impl::kBF16Gemv, Impl::kBF16Gemv, 320, 0.88, "f16"},
                          {"int8 + bf16 lm_head", Impl::kInt8, Impl::kBF16Gemv, 250, 0.60, "q8_0"},
                          {"int4 + bf16 lm_head", Impl::kInt4, Impl::kBF16Gemv, 196, 0.40, "q4_0"}};
  std::printf("\n## Per-token estimate: 28 × (qkv + dense + h_to_4h + 4h_to_h) + lm_head, batch 1, 2 threads\n\n"
              "Floor = weight bytes / measured 2-thread read bandwidth (%.1f GB/s, best round). chatglm.cpp: its ms/token and fraction of its own floor on the Zen 4 of performance-targets.md (different machine: compare fractions).\n\n"
              "| weights | GB read/token | ms/token (median) | ms/token (best) | floor ms | fraction of floor | chatglm.cpp ms, fraction (format) |\n|---|---|---|---|---|---|---|\n",
              bw[2].best);
  for (const auto& m : models) {
    double med = 0, best = 0, bytes = 0;
    for (const auto& s : kLayers) {
      med += 28 * ms[{int(m.linear), s.name}].median;
      best += 28 * ms[{int(m.linear), s.name}].best;
      bytes += 28 * bytes_of[{int(m.linear), s.name}];
    }
    med += ms[{int(m.head), "lm_head"}].median;
    best += ms[{int(m.head), "lm_head"}].best;
    bytes += bytes_of[{int(m.head), "lm_head"}];
    const double floor_ms = bytes / (bw[2].best * 1e9) * 1e3;
    char cpp[32] = "-";
    if (m.cpp_ms > 0) std::snprintf(cpp, sizeof cpp, "%.0f, %.2f (%s)", m.cpp_ms, m.cpp_frac, m.cpp_fmt);
    std::printf("| %s | %.2f | %.0f | %.0f | %.0f | %.2f | %s |\n", m.name, bytes / 1e9, med, best, floor_ms,
                floor_ms / med, cpp);
  }
  std::fflush(stdout);

  // (d) batch crossover on h_to_4h (16384×4096), 2 threads: row kernel vs dequantize/convert + GEMM
  at::set_num_threads(2);
  std::printf("\n## Batch crossover, h_to_4h 16384×4096, 2 threads, ms per call (median)\n\n"
              "| tokens | int4 kernel | int4 deq+sgemm | int8 kernel | int8 deq+sgemm | bf16 kernel | bf16 at::linear |\n|---|---|---|---|---|---|---|\n");
  {
    const int64_t out = 16384, in = 4096;
    const int cr = quick ? 2 : 3;
    auto w4 = make_weight(Impl::kInt4, out, in), w8 = make_weight(Impl::kInt8, out, in);
    auto wb = make_weight(Impl::kBF16Gemv, out, in);
    auto buf = at::empty({out, in});
    for (int64_t T : {1, 2, 4, 8, 12, 16, 32}) {
      auto x = at::randn({T, in});
      auto xb = x.to(at::kBFloat16);
      auto k4 = time_calls([&](int) { gemv_forward(x, w4.weight, WeightFormat::kInt4, w4.scale, w4.bias); }, 1, cr);
      auto g4 = time_calls([&](int) { dequantize_into(w4.weight, w4.scale, 4, buf); at::linear(x, buf, w4.bias); }, 1, cr);
      auto k8 = time_calls([&](int) { gemv_forward(x, w8.weight, WeightFormat::kInt8, w8.scale, w8.bias); }, 1, cr);
      auto g8 = time_calls([&](int) { dequantize_into(w8.weight, w8.scale, 8, buf); at::linear(x, buf, w8.bias); }, 1, cr);
      auto kb = time_calls([&](int) { gemv_forward(xb, wb.weight, WeightFormat::kBF16, at::Tensor(), wb.bias); }, 1, cr);
      auto lb = time_calls([&](int) { at::linear(xb, wb.weight, wb.bias); }, 1, cr);
      std::printf("| %ld | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", long(T), k4.median * 1e3, g4.median * 1e3,
                  k8.median * 1e3, g8.median * 1e3, kb.median * 1e3, lb.median * 1e3);
      std::fflush(stdout);
    }
  }
  return 0;
}
