// The decode row kernels alone, without libtorch at run time: the AVX2 and AVX-512 families of
// model/qgemv_*.cpp on the ChatGLM-6B Linear shapes, batch 1, with OpenMP threads splitting rows the
// way gemv_forward does, against the 8-stream read probe of bench/read_bandwidth.h in the same run.
// A static binary, so it runs on any x86-64 Linux machine (e.g. a quiet one with another CPU):
//
//   bash bench/bare_kernels.sh            # builds /tmp/bare_kernels (static) from the repo sources
//   OMP_NUM_THREADS=2 taskset -c 0,1 /tmp/bare_kernels [--rounds 5]
//   OMP_NUM_THREADS=1 /tmp/bare_kernels --cpu-time      (a shared machine: thread CPU time)
//   OMP_NUM_THREADS=1 /tmp/bare_kernels --compute       (compute ceilings: weights resident in L2)
//
// Prints markdown: per-shape GB/s per family, and the per-token estimate 28 × (qkv + dense + h_to_4h
// + 4h_to_h) + bf16 lm_head against the floor (bytes / best probe). Every call reads a different
// window of a 2 GiB buffer, so no weight is found in cache. Activations are prepared as gemv_forward
// prepares them (int16 blocks for int8/int4, even | odd split for bf16 on AVX-512).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "bench/read_bandwidth.h"
#include "model/qgemv.h"

using namespace glmpipe;

namespace {

// --cpu-time (one thread only): the calling thread's CPU time instead of wall time, so that time
// slices lost to other processes on a shared machine do not count (memory stalls still do).
bool g_cpu_time = false;

double now_s() {
  if (g_cpu_time) {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

constexpr int64_t kBuf = int64_t(2) << 30;

const char* isa_name(KernelIsa k) { return k == KernelIsa::kAvx512 ? "avx512" : "avx2"; }

struct Shape {
  const char* name;
  int64_t out, in;
};
const Shape kLayers[] = {{"qkv", 12288, 4096}, {"dense", 4096, 4096}, {"h_to_4h", 16384, 4096}, {"4h_to_h", 4096, 16384}};
const Shape kHead = {"lm_head", 130528, 4096};

double probe(const float* p, int threads) {
  const int64_t n = (int64_t(1) << 30) / 4;
  double best = 0;
  for (int r = 0; r < 6; ++r) {
    const double t0 = now_s();
    float acc = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : acc)
    for (int k = 0; k < threads; ++k) acc += bench::detail::sum_streams8(p + k * (n / threads), n / threads);
    const double dt = now_s() - t0;
    if (acc == 12345.f) std::printf(" ");
    if (r > 0) best = std::max(best, n * 4.0 / dt / 1e9);
  }
  return best;
}

int64_t row_bytes(WeightFormat f, int64_t in) {
  return f == WeightFormat::kBF16 ? 2 * in : f == WeightFormat::kInt8 ? in : in / 2;
}

// Best and median seconds per call of `isa` on shape s (format f), 1 token.
// resident: every call reads the same weights (kept in L2 when they fit: the compute ceiling).
std::pair<double, double> time_kernel(KernelIsa isa, WeightFormat f, const Shape& s, const uint8_t* buf, int threads,
                                      int rounds, std::vector<float>& y, bool resident = false) {
  std::vector<float> x(s.in), xs(2 * s.in, 0.f);
  for (int64_t c = 0; c < s.in; ++c) x[c] = std::sin(0.37 * c);
  std::vector<int16_t> xq(s.in);
  std::vector<float> qs((s.in + glmpipe::detail::kXqBlock - 1) / glmpipe::detail::kXqBlock);
  glmpipe::detail::GemvArgs a;
  a.fmt = f;
  a.tokens = 1;
  a.in = s.in;
  a.out = s.out;
  a.x_raw = x.data();
  y.assign(s.out, 0.f);
  a.y = y.data();
  std::vector<int8_t> x8(s.in);
  std::vector<float> x8s(s.in / 4 + 1);
  const bool one_int = f == WeightFormat::kInt8 || f == WeightFormat::kInt4;
  const bool have_x8 = one_int && glmpipe::detail::prepare_x8(isa, a, x8.data(), x8s.data());  // as gemv_forward
  if (one_int && !have_x8) {  // as quantize_x_i16 in qgemv.cpp
    const int64_t half = s.in / 2;
    for (size_t b = 0; b < qs.size(); ++b) {
      float m = 0;
      for (int64_t c = b * glmpipe::detail::kXqBlock; c < std::min<int64_t>(s.in, (b + 1) * glmpipe::detail::kXqBlock); ++c) m = std::max(m, std::fabs(x[c]));
      qs[b] = m > 0 ? m / 32767.f : 1.f;
      for (int64_t c = b * glmpipe::detail::kXqBlock; c < std::min<int64_t>(s.in, (b + 1) * glmpipe::detail::kXqBlock); ++c) {
        const auto q = static_cast<int16_t>(std::lrint(x[c] / qs[b]));
        if (f == WeightFormat::kInt4) xq[(c % 2 ? half : 0) + c / 2] = q;
        else xq[c] = q;
      }
    }
    a.xq = xq.data();
    a.xq_scale = qs.data();
  } else if (isa == KernelIsa::kAvx512) {  // even | odd split
    for (int64_t c = 0; c < s.in; ++c) xs[(c % 2 ? s.in / 2 : 0) + c / 2] = x[c];
    a.x = xs.data();
    a.ldx = s.in;
    a.x_split = true;
  } else {
    a.x = x.data();
    a.ldx = s.in;
  }
  const int64_t bytes = row_bytes(f, s.in) * s.out;
  const int64_t windows = resident ? 1 : std::max<int64_t>(1, (kBuf - bytes) / bytes);
  std::vector<double> t;
  const int calls = resident ? 400 : std::max<int64_t>(3, std::min<int64_t>(24, (int64_t(1) << 30) / bytes));
  for (int r = 0; r < rounds; ++r) {
    const double t0 = now_s();
    for (int i = 0; i < calls; ++i) {
      a.w = buf + (i % windows) * bytes;
#pragma omp parallel num_threads(threads)
      {
        const int k = omp_get_thread_num(), n = omp_get_num_threads();
        const int64_t per = (s.out + n - 1) / n;
        const int64_t r0 = std::min(s.out, k * per), r1 = std::min(s.out, r0 + per);
        if (r0 < r1) (isa == KernelIsa::kAvx512 ? glmpipe::detail::gemv_rows_avx512 : glmpipe::detail::gemv_rows_avx2)(a, r0, r1);
      }
    }
    t.push_back((now_s() - t0) / calls);
  }
  std::sort(t.begin(), t.end());
  return {t.front(), t[t.size() / 2]};
}

// --compute: each family's one-token rate with 768 KB of weights that stay in L2 (thread CPU time,
// one thread): the compute ceiling per core, to set beside each core's share of the read floor (a
// kernel near its ceiling cannot keep the memory busy).
int compute_ceilings(const std::vector<KernelIsa>& isas, const uint8_t* buf, int rounds) {
  std::printf("## bare_kernels --compute: one token, 768 KB of weights resident in L2, 1 thread, thread CPU time\n\n"
              "| format | kernels | GB/s per core (best) | GB/s per core (median) |\n|---|---|---|---|\n");
  std::vector<float> y;
  for (WeightFormat f : {WeightFormat::kBF16, WeightFormat::kInt8, WeightFormat::kInt4})
    for (KernelIsa isa : isas) {
      const Shape s{"l2", (768 << 10) / row_bytes(f, 4096), 4096};
      auto [best, med] = time_kernel(isa, f, s, buf, 1, rounds, y, true);
      const double gb = row_bytes(f, s.in) * s.out / 1e9;
      std::printf("| %s | %s | %.1f | %.1f |\n", f == WeightFormat::kBF16 ? "bf16" : f == WeightFormat::kInt8 ? "int8" : "int4",
                  isa_name(isa), gb / best, gb / med);
    }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 5;
  bool compute = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--cpu-time")) g_cpu_time = true;
    else if (!std::strcmp(argv[i], "--compute")) compute = g_cpu_time = true;
  }
  const int threads = omp_get_max_threads();
  if (g_cpu_time && threads != 1) {
    std::fprintf(stderr, "bare_kernels: --cpu-time needs OMP_NUM_THREADS=1\n");
    return 1;
  }
  std::vector<KernelIsa> isas;
  if (glmpipe::detail::cpu_supports_avx2_kernels()) isas.push_back(KernelIsa::kAvx2);
  if (glmpipe::detail::cpu_supports_avx512_kernels()) isas.push_back(KernelIsa::kAvx512);
  // 2 GiB of small random-looking bytes: finite in every format (bf16 exponents kept small)
  std::vector<uint8_t> buf(kBuf);
  uint32_t st = 12345;
  for (int64_t i = 0; i < kBuf; ++i) {
    st = st * 1664525u + 1013904223u;
    buf[i] = static_cast<uint8_t>(st >> 24);
    if (i % 2 == 1) buf[i] = static_cast<uint8_t>(0x3C + (buf[i] & 1)) ^ (buf[i] & 0x80);  // bf16 high byte
  }
  if (compute) return compute_ceilings(isas, buf.data(), rounds);
  const float* fp = reinterpret_cast<const float*>(buf.data());
  std::vector<float> ones((int64_t(1) << 30) / 4, 1.0f);
  std::vector<double> probes{probe(ones.data(), threads)};
  char cpu[256] = "unknown";
  if (FILE* f = popen("sed -n 's/^model name\\t*: *//p' /proc/cpuinfo | head -1", "r")) {
    if (fgets(cpu, sizeof cpu, f)) cpu[strcspn(cpu, "\n")] = 0;
    pclose(f);
  }
  (void)fp;
  std::printf("## bare_kernels, %s, %d threads, %d rounds (best / median), %s\n\n", cpu, threads, rounds,
              g_cpu_time ? "thread CPU time" : "wall time");
  std::printf("| format | kernels | shape | MB | best ms | GB/s (best) | GB/s (median) |\n|---|---|---|---|---|---|---|\n");
  struct Tot {
    std::string name;
    double ms = 0, gb = 0;
  };
  std::vector<Tot> totals;
  std::vector<float> y0, y1;
  for (WeightFormat f : {WeightFormat::kBF16, WeightFormat::kInt8, WeightFormat::kInt4}) {
    const char* fname = f == WeightFormat::kBF16 ? "bf16" : f == WeightFormat::kInt8 ? "int8" : "int4";
    for (KernelIsa isa : isas) {
      Tot tot{std::string(fname) + " " + isa_name(isa)};
      std::vector<Shape> shapes(std::begin(kLayers), std::end(kLayers));
      for (const Shape& s : shapes) {
        auto [best, med] = time_kernel(isa, f, s, buf.data(), threads, rounds, y0);
        const double mb = row_bytes(f, s.in) * s.out / 1e6;
        std::printf("| %s | %s | %s %ldx%ld | %.0f | %.2f | %.1f | %.1f |\n", fname, isa_name(isa), s.name,
                    long(s.out), long(s.in), mb, best * 1e3, mb / 1e3 / best, mb / 1e3 / med);
        tot.ms += 28 * med * 1e3;
        tot.gb += 28 * mb / 1e3;
      }
      auto [hb, hm] = time_kernel(isa, WeightFormat::kBF16, kHead, buf.data(), threads, rounds, y1);
      std::printf("| bf16 | %s | lm_head 130528x4096 | 1069 | %.2f | %.1f | %.1f |\n", isa_name(isa), hb * 1e3,
                  1.069 / hb, 1.069 / hm);
      tot.ms += hm * 1e3;
      tot.gb += 1.069;
      totals.push_back(tot);
      std::fflush(stdout);
    }
    probes.push_back(probe(ones.data(), threads));
  }
  const double bw = *std::max_element(probes.begin(), probes.end());
  std::printf("\nread probe (%d threads, 8 streams per thread, best of 5):", threads);
  for (double p : probes) std::printf(" %.1f", p);
  std::printf(" GB/s; floor = bytes / %.1f GB/s\n\n", bw);
  std::printf("| weights (kernels) | GB read/token (28 layers + bf16 lm_head) | ms/token (medians) | floor ms | fraction of floor |\n|---|---|---|---|---|\n");
  for (const Tot& t : totals)
    std::printf("| %s | %.2f | %.1f | %.1f | %.2f |\n", t.name.c_str(), t.gb, t.ms, t.gb / bw * 1e3, t.gb / bw * 1e3 / t.ms);
  return 0;
}
