// What happens to a 3-stage job when the middle rank dies: the test re-runs this executable under
// mpirun (FaultHelper.Run, active only when GLMPIPE_FAULT_MODE is set) and checks that every process
// exits within 10 s, with a non-zero code and a message naming the lost rank.
//  * kill: rank 1 is kill -9'ed mid-exchange (its pid comes from a file it writes).
//  * throw: rank 1 throws; run_rank_guarded logs it with rank/stage and MPI_Aborts the job.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <iostream>
#include <fstream>
#include <thread>

#include "comm/failure.h"
#include "comm/mpi_transport.h"
#include "comm/rank_context.h"
#include "common/error.h"
#include "launcher/mpirun.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

std::string self_exe() {
  char buf[PATH_MAX] = {0};
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, n) : std::string();
}

// The rank program: a ring exchange that runs until something kills it (60 s at most).
TEST(FaultHelper, Run) {
  const char* mode = std::getenv("GLMPIPE_FAULT_MODE");
  if (!mode) GTEST_SKIP() << "helper for MpiFailureTest, runs only under it";
  MpiSession session;
  const RankContext& ctx = session.context();
  install_failure_handlers(ctx);
  int rc = run_rank_guarded([&] {
    TransportOptions opt;
    opt.timeout = std::chrono::seconds(8);  // backstop if mpirun did not tear the job down
    opt.spin = std::chrono::microseconds(50);
    opt.poll_interval = std::chrono::microseconds(200);
    auto tr = make_mpi_transport(ctx, opt);
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (int64_t k = 0; std::chrono::steady_clock::now() < end; ++k) {
      auto op = tr->isend(ctx.ring_next(), Tag::kActivations, k, k, at::full({4, 4096}, float(k)));
      Expectation want;
      want.seq_id = k;
      tr->recv(ctx.ring_prev(), Tag::kActivations, want);
      op->wait();
      if (k == 10) {
        std::ofstream(std::string(std::getenv("GLMPIPE_FAULT_DIR")) + "/pid." + std::to_string(ctx.rank()))
            << ::getpid() << "\n";
      }
      if (k == 20 && ctx.rank() == 1 && std::string(mode) == "throw") {
        std::cout << "T_FAIL=" << std::chrono::duration_cast<std::chrono::nanoseconds>(
                                      std::chrono::system_clock::now().time_since_epoch()).count()
                  << std::endl;
        GLMPIPE_FAIL() << "injected failure on stage 1 at step " << k;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  EXPECT_EQ(rc, 0);
}

struct JobOutcome {
  test::RunResult run;
  double seconds = 0;           // whole job, start-up included (start-up is slow on a loaded machine)
  double teardown_seconds = -1;  // from the failure (kill or throw) to mpirun's exit
};

int64_t stamp(const std::string& out, const std::string& key) {
  size_t p = out.find(key + "=");
  return p == std::string::npos ? -1 : std::atoll(out.c_str() + p + key.size() + 1);
}

JobOutcome run_job(const std::string& mode, const std::string& dir, bool kill_rank1) {
  LaunchSpec spec;
  spec.ranks.resize(3);
  spec.forward_env = {"GLMPIPE_FAULT_MODE", "GLMPIPE_FAULT_DIR"};
  spec.extra_args = {"--mca", "pml", "ob1"};
  spec.local_cores = 2;
  const std::string mpirun = shell_quote_join(build_mpirun_argv(spec, {self_exe(), "--gtest_filter=FaultHelper.Run"}));
  std::string script = "export GLMPIPE_FAULT_MODE=" + mode + " GLMPIPE_FAULT_DIR='" + dir + "'; " + mpirun + " & MP=$!; ";
  if (kill_rank1) {
    script += "for i in $(seq 1 400); do [ -s '" + dir + "/pid.1' ] && break; sleep 0.05; done; sleep 0.3; ";
    script += "echo killing $(cat '" + dir + "/pid.1'); echo T_FAIL=$(date +%s%N); kill -9 $(cat '" + dir + "/pid.1'); ";
  }
  script += "wait $MP; RC=$?; echo T_END=$(date +%s%N); sleep 0.2; for r in 0 1 2; do p=$(cat '" + dir + "/pid.'$r 2>/dev/null); "
            "s=$(awk '{print $3}' /proc/$p/stat 2>/dev/null); "
            "[ -n \"$s\" ] && [ \"$s\" != Z ] && echo \"rank $r still alive (state $s)\"; done; exit $RC";
  JobOutcome o;
  const auto t0 = std::chrono::steady_clock::now();
  o.run = test::run_command(script);
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t fail = stamp(o.run.out, "T_FAIL"), end = stamp(o.run.out, "T_END");
  if (fail > 0 && end > 0) o.teardown_seconds = double(end - fail) * 1e-9;
  return o;
}

TEST(MpiFailureTest, KillNineOfMiddleRankEndsTheJobFast) {
  const std::string dir = test::make_temp_dir("mpi_kill");
  JobOutcome o = run_job("kill", dir, true);
  const std::string all = o.run.out + o.run.err;
  ASSERT_TRUE(test::file_exists(dir + "/pid.1")) << "rank 1 never reached the exchange:\n" << all;
  EXPECT_GE(o.teardown_seconds, 0.0) << all;
  EXPECT_LT(o.teardown_seconds, 10.0) << "all ranks must be gone within 10 s of the kill\n" << all;
  EXPECT_NE(o.run.exit_code, 0) << all;
  EXPECT_NE(all.find("process rank 1"), std::string::npos) << all;
  EXPECT_NE(all.find("signal 9"), std::string::npos) << all;
  EXPECT_EQ(all.find("still alive"), std::string::npos) << all;
  std::cout << "kill -9 of rank 1: job ended " << o.teardown_seconds << " s after the kill (" << o.seconds
            << " s with start-up), mpirun exit "
            << o.run.exit_code << "\n";
}

TEST(MpiFailureTest, ExceptionOnMiddleRankAbortsAllRanks) {
  const std::string dir = test::make_temp_dir("mpi_throw");
  JobOutcome o = run_job("throw", dir, false);
  const std::string all = o.run.out + o.run.err;
  EXPECT_GE(o.teardown_seconds, 0.0) << all;
  EXPECT_LT(o.teardown_seconds, 10.0) << "all ranks must be gone within 10 s of the exception\n" << all;
  EXPECT_NE(o.run.exit_code, 0) << all;
  EXPECT_NE(all.find("rank 1/3 (stage 1) failed: injected failure on stage 1 at step 20"), std::string::npos) << all;
  // mpirun normally adds "MPI_ABORT was invoked on rank 1 ..." (under heavy load its show_help can
  // fail with an ORTE_ERROR_LOG instead), so the rank's own log line above is what is required.
  EXPECT_EQ(all.find("still alive"), std::string::npos) << all;
  std::cout << "exception on rank 1: job ended " << o.teardown_seconds << " s after the throw (" << o.seconds
            << " s with start-up), mpirun exit " << o.run.exit_code << "\n";
}

}  // namespace
}  // namespace glmpipe
