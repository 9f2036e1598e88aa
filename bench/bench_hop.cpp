// One-way hop latency between two pipeline ranks (ping-pong / 2): a [rows, 4096] activation in f32
// and bf16 through the MPI transport (header + payload, validation, allocation of the received
// tensor) versus raw MPI_Send/MPI_Recv of the same payload bytes (the ceiling). Median of many
// round trips. Run: mpirun -np 2 --bind-to none build/bench/bench_hop [iterations]
// (This program includes <mpi.h> itself, for the raw baseline only.)
#include <mpi.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "comm/mpi_transport.h"
#include "comm/rank_context.h"

using namespace glmpipe;
using Clock = std::chrono::steady_clock;

namespace {

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * v.size()))];
}

// Returns one-way latencies in µs (round trip / 2), measured on rank 0.
template <class PingPong>
std::vector<double> measure(int rank, int iters, PingPong pp) {
  for (int i = 0; i < iters / 10 + 10; ++i) pp();  // warm-up
  std::vector<double> us;
  us.reserve(iters);
  for (int i = 0; i < iters; ++i) {
    auto t0 = Clock::now();
    pp();
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / 2);
  }
  (void)rank;
  return us;
}

}  // namespace

int main(int argc, char** argv) {
  MpiSession session;
  const RankContext& ctx = session.context();
  if (ctx.world() != 2) {
    if (ctx.rank() == 0) std::fprintf(stderr, "bench_hop needs exactly 2 ranks (mpirun -np 2)\n");
    return 1;
  }
  const int iters = argc > 1 ? std::atoi(argv[1]) : 2000;
  auto tr = make_mpi_transport(ctx);
  const int me = ctx.rank(), peer = 1 - me;
  if (me == 0) {
    std::time_t now = std::time(nullptr);
    char date[64];
    std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M", std::localtime(&now));
    std::printf("bench_hop: one-way hop latency (ping-pong / 2), median of %d round trips\n", iters);
    std::printf("machine: %s, %u cpus; date %s; MPI thread level %s\n", cpu_model().c_str(),
                std::thread::hardware_concurrency(), date, thread_level_name(ctx.thread_level()));
    std::printf("| dtype | rows | bytes | transport median µs | p90 µs | raw MPI median µs | p90 µs | overhead µs |\n");
    std::printf("|---|---|---|---|---|---|---|---|\n");
  }
  for (auto dt : {at::kFloat, at::kBFloat16})
    for (int64_t rows : {1, 4, 16}) {
      at::Tensor x = at::randn({rows, 4096}).to(dt);  // [rows, hidden]
      Expectation want;
      want.dtype = to_dtype(dt);
      want.shape = {rows, 4096};
      auto via_transport = [&] {
        if (me == 0) {
          tr->send(peer, Tag::kProbe, 0, 0, x);
          tr->recv(peer, Tag::kProbe, want);
        } else {
          Received r = tr->recv(peer, Tag::kProbe, want);
          tr->send(peer, Tag::kProbe, 0, 0, r.tensor);
        }
      };
      const int bytes = int(x.numel() * x.element_size());
      std::vector<char> buf(bytes);
      auto raw = [&] {
        if (me == 0) {
          MPI_Send(x.data_ptr(), bytes, MPI_BYTE, peer, 7, MPI_COMM_WORLD);
          MPI_Recv(buf.data(), bytes, MPI_BYTE, peer, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
          MPI_Recv(buf.data(), bytes, MPI_BYTE, peer, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
          MPI_Send(buf.data(), bytes, MPI_BYTE, peer, 7, MPI_COMM_WORLD);
        }
      };
      tr->barrier();
      auto t = measure(me, iters, via_transport);
      tr->barrier();
      auto r = measure(me, iters, raw);
      if (me == 0)
        std::printf("| %s | %ld | %d | %.1f | %.1f | %.1f | %.1f | %.1f |\n", dtype_name(to_dtype(dt)), long(rows),
                    bytes, median(t), percentile(t, 0.9), median(r), percentile(r, 0.9), median(t) - median(r));
    }
  tr->barrier();
  tr.reset();
  return 0;
}
