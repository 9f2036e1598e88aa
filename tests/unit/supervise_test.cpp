// run_supervised (launcher/supervise.h): the parent glmpipe stays for the mpirun it starts. A rank's
// report (kLauncherSignal) gives the child a grace period, then the child and what it started are
// killed; a child that ends within the grace keeps its status; signals reach the child.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "comm/job_teardown.h"
#include "launcher/supervise.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

using Clock = std::chrono::steady_clock;

// Sends `sig` with `value` to this process after `ms` (as a rank or a user would).
std::thread send_later(int sig, int value, int ms) {
  return std::thread([=] {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    union sigval v;
    v.sival_int = value;
    sigqueue(getpid(), sig, v);
  });
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

TEST(Supervise, ReportedJobThatDoesNotEndIsKilledWithWhatItStarted) {
  SuperviseOptions o;
  o.grace_s = 0.5;
  // Like mpirun waiting for an unreachable daemon: ignores SIGTERM, and has a child of its own.
  const std::string dir = "/tmp/glmpipe_supervise_" + std::to_string(getpid());
  auto report = send_later(kLauncherSignal, encode_abort_report(2, 1), 300);
  const auto t0 = Clock::now();
  SupervisedExit r = run_supervised({"sh", "-c", "trap '' TERM; sleep 30 & echo $! > " + dir + "; wait"}, o);
  const double took = seconds_since(t0);
  report.join();
  EXPECT_TRUE(r.reported);
  EXPECT_EQ(r.reporter, 2);
  EXPECT_EQ(r.silent, 1);
  EXPECT_TRUE(r.ended_by_us);
  EXPECT_EQ(r.status, 128 + SIGKILL);
  EXPECT_GT(took, 0.75);  // report at 0.3 s + grace 0.5 s
  EXPECT_LT(took, 10.0);
  int sleeper = 0;
  FILE* f = fopen(dir.c_str(), "r");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(fscanf(f, "%d", &sleeper), 1);
  fclose(f);
  std::remove(dir.c_str());
  auto running = [&] {  // a zombie (killed, not yet reaped by init) has ended
    const std::string stat = test::read_file("/proc/" + std::to_string(sleeper) + "/stat");
    const size_t rp = stat.rfind(')');
    return rp != std::string::npos && rp + 2 < stat.size() && stat[rp + 2] != 'Z';
  };
  for (int i = 0; i < 50 && running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(running()) << "the child's own child (pid " << sleeper << ") survived";
}

TEST(Supervise, ChildThatEndsWithinTheGraceKeepsItsStatus) {
  SuperviseOptions o;
  o.grace_s = 5;
  auto report = send_later(kLauncherSignal, encode_abort_report(0, -1), 100);
  SupervisedExit r = run_supervised({"sh", "-c", "sleep 0.5; exit 3"}, o);
  report.join();
  EXPECT_TRUE(r.reported);
  EXPECT_EQ(r.reporter, 0);
  EXPECT_EQ(r.silent, -1);
  EXPECT_FALSE(r.ended_by_us);
  EXPECT_EQ(r.status, 3);
}

TEST(Supervise, SignalsReachTheChild) {
  const std::string loop = "; while :; do sleep 0.05; done";
  {
    auto term = send_later(SIGTERM, 0, 300);  // passed on as itself
    SupervisedExit r = run_supervised({"sh", "-c", "trap 'exit 7' TERM" + loop}, SuperviseOptions{});
    term.join();
    EXPECT_EQ(r.status, 7);
    EXPECT_FALSE(r.reported);
  }
  SuperviseOptions o;
  o.forward_as = SIGUSR1;  // serve: SIGINT becomes the ranks' drain request
  o.own_group = true;
  auto interrupt = send_later(SIGINT, 0, 300);
  SupervisedExit r = run_supervised({"sh", "-c", "trap 'exit 9' USR1" + loop}, o);
  interrupt.join();
  EXPECT_EQ(r.status, 9);
}

TEST(Supervise, ReportValueRoundTrips) {
  for (auto [reporter, silent] : {std::pair{0, -1}, {0, 1}, {4095, 4094}, {3, 0}}) {
    int a = -9, b = -9;
    decode_abort_report(encode_abort_report(reporter, silent), &a, &b);
    EXPECT_EQ(a, reporter);
    EXPECT_EQ(b, silent);
  }
}

}  // namespace
}  // namespace glmpipe
