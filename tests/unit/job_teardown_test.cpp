// comm/job_teardown.h: the watcher a rank leaves behind for its Open MPI daemon (a process named
// orted) ends it when it outlives the grace, leaves it alone when it ends in time, and is not
// started for any other parent (mpirun's own ranks); host_identity() tells hosts apart.
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include "comm/job_teardown.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

using Clock = std::chrono::steady_clock;

// Starts `program` (a copy of sleep under another name) with `seconds`.
pid_t start(const std::string& program, const std::string& seconds) {
  std::string p = program, s = seconds;
  char* argv[] = {p.data(), s.data(), nullptr};
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, program.c_str(), nullptr, nullptr, argv, environ), 0) << program;
  return pid;
}

class JobTeardown : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("teardown");
    orted_ = dir_ + "/orted";
    ASSERT_EQ(std::system(("cp \"$(command -v sleep)\" " + orted_).c_str()), 0);
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  // Waits for `pid`; returns its wait status and the seconds it took.
  static std::pair<int, double> reap(pid_t pid) {
    const auto t0 = Clock::now();
    int status = 0;
    waitpid(pid, &status, 0);
    return {status, std::chrono::duration<double>(Clock::now() - t0).count()};
  }
  std::string dir_, orted_;
};

TEST_F(JobTeardown, DaemonStillRunningAfterTheGraceIsEnded) {
  const pid_t daemon = start(orted_, "60");  // a daemon that would wait for ever
  ASSERT_TRUE(watch_daemon(daemon, 1));
  auto [status, took] = reap(daemon);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << status;
  EXPECT_GT(took, 0.8);
  EXPECT_LT(took, 10.0);
}

TEST_F(JobTeardown, DaemonThatEndsInTimeIsLeftAlone) {
  const pid_t daemon = start(orted_, "1");  // ends by itself (it reached mpirun)
  ASSERT_TRUE(watch_daemon(daemon, 3));
  auto [status, took] = reap(daemon);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_LT(took, 2.9);
}

TEST_F(JobTeardown, OnlyADaemonIsWatched) {
  const pid_t other = start(orted_, "0");  // ends at once
  reap(other);
  EXPECT_FALSE(watch_daemon(other, 1)) << "a process that has ended";
  ASSERT_EQ(std::system(("cp " + orted_ + " " + dir_ + "/mpirun").c_str()), 0);
  const pid_t mpirun = start(dir_ + "/mpirun", "3");
  EXPECT_FALSE(watch_daemon(mpirun, 1)) << "mpirun is not a daemon: its ranks' host is the launcher's";
  auto [status, took] = reap(mpirun);
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_GT(took, 1.5) << "killed";
}

TEST(HostIdentity, NamesTheNetworkAndPidNamespaces) {
  const std::string id = host_identity();
  EXPECT_NE(id.find(" net:["), std::string::npos) << id;
  EXPECT_NE(id.find(" pid:["), std::string::npos) << id;
  EXPECT_EQ(id, host_identity());
}

}  // namespace
}  // namespace glmpipe
