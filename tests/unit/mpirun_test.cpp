// The mpirun command-line builder: the exact lines for the usual layouts, and invalid specs.
#include <gtest/gtest.h>

#include "common/error.h"
#include "launcher/mpirun.h"

namespace glmpipe {
namespace {

LaunchSpec cpu_spec(std::vector<int> threads, bool root = false, int cores = 2) {
  LaunchSpec s;
  for (int t : threads) s.ranks.push_back(RankLaunch{"", t, -1, {}});
  s.as_root = root;
  s.local_cores = cores;
  s.bind_to_none = false;
  return s;
}

const std::vector<std::string> kProg = {"glmpipe", "stage", "--config", "my deploy.yaml"};

TEST(MpirunTest, TwoSingleThreadCpuRanksOnOneHost) {
  auto argv = build_mpirun_argv(cpu_spec({1, 1}), kProg);
  EXPECT_EQ(shell_quote_join(argv),
            "mpirun --mca btl self,vader -np 2 -x OMP_NUM_THREADS=1 -x GLMPIPE_THREADS=1 "
            "glmpipe stage --config 'my deploy.yaml'");
}

TEST(MpirunTest, DifferentThreadCountsGiveMpmdAndBindToNoneAndRootAndOversubscribe) {
  LaunchSpec s = cpu_spec({2, 1, 1}, /*root=*/true);
  s.forward_env = {"GLMPIPE_LOG_LEVEL"};
  auto argv = build_mpirun_argv(s, {"glmpipe", "stage"});
  EXPECT_EQ(shell_quote_join(argv),
            "mpirun --allow-run-as-root --mca btl self,vader --oversubscribe --bind-to none "
            "-x GLMPIPE_LOG_LEVEL "
            "-np 1 -x OMP_NUM_THREADS=2 -x GLMPIPE_THREADS=2 glmpipe stage : "
            "-np 2 -x OMP_NUM_THREADS=1 -x GLMPIPE_THREADS=1 glmpipe stage");
}

TEST(MpirunTest, MultiHostGpuRanksUseHostListAndTcpBetweenHosts) {
  LaunchSpec s;
  s.as_root = false;
  s.bind_to_none = true;
  s.ranks = {{"a", 1, 0, {}}, {"a", 1, 1, {}}, {"b", 1, 0, {{"NCCL_DEBUG", "WARN"}}}};
  s.extra_args = {"--mca", "btl_tcp_if_include", "eth0"};
  auto argv = build_mpirun_argv(s, {"glmpipe"});
  EXPECT_EQ(shell_quote_join(argv),
            "mpirun --mca btl self,vader,tcp --bind-to none --host a:2,b:1 --mca btl_tcp_if_include eth0 "
            "-np 1 -x GLMPIPE_DEVICE=0 glmpipe : -np 1 -x GLMPIPE_DEVICE=1 glmpipe : "
            "-np 1 -x GLMPIPE_DEVICE=0 -x NCCL_DEBUG=WARN glmpipe");
}

TEST(MpirunTest, HostfileReplacesHostList) {
  LaunchSpec s = cpu_spec({1, 1, 1, 1});
  s.ranks[2].host = "n2";
  s.ranks[3].host = "n2";
  s.hostfile = "/etc/hosts.mpi";
  auto argv = build_mpirun_argv(s, {"x"});
  EXPECT_EQ(shell_quote_join(argv),
            "mpirun --mca btl self,vader,tcp --hostfile /etc/hosts.mpi -np 4 -x OMP_NUM_THREADS=1 -x GLMPIPE_THREADS=1 x");
}

TEST(MpirunTest, TransportsAndMcaParametersInOrder) {
  LaunchSpec s = cpu_spec({1, 1, 1});
  s.ranks[0].host = s.ranks[1].host = "h0";
  s.ranks[2].host = "h1";
  s.btl = {"self", "tcp"};
  s.mca = {{"plm_rsh_agent", "/opt/my agent.sh"}, {"oob_tcp_if_include", "10.0.0.0/24"}};
  EXPECT_EQ(shell_quote_join(build_mpirun_argv(s, {"x"})),
            "mpirun --mca btl self,tcp --mca plm_rsh_agent '/opt/my agent.sh' --mca oob_tcp_if_include 10.0.0.0/24 "
            "--host h0:2,h1:1 -np 3 -x OMP_NUM_THREADS=1 -x GLMPIPE_THREADS=1 x");
  // One named host: shared memory only, a host list, no --oversubscribe (its cores are not ours to count).
  LaunchSpec one = cpu_spec({1, 1, 1}, false, 1);
  for (auto& r : one.ranks) r.host = "far";
  EXPECT_EQ(shell_quote_join(build_mpirun_argv(one, {"x"})),
            "mpirun --mca btl self,vader --host far:3 -np 3 -x OMP_NUM_THREADS=1 -x GLMPIPE_THREADS=1 x");
  s.mca.push_back({"btl", "tcp"});
  EXPECT_THROW(build_mpirun_argv(s, {"x"}), Error);
}

TEST(MpirunTest, NoOversubscribeWhenCoresSuffice) {
  auto argv = build_mpirun_argv(cpu_spec({1, 1, 1}, false, 8), {"x"});
  EXPECT_EQ(std::count(argv.begin(), argv.end(), "--oversubscribe"), 0);
  argv = build_mpirun_argv(cpu_spec({1, 1, 1}, false, 2), {"x"});
  EXPECT_EQ(std::count(argv.begin(), argv.end(), "--oversubscribe"), 1);
}

TEST(MpirunTest, InvalidSpecsThrow) {
  EXPECT_THROW(build_mpirun_argv(LaunchSpec{}, {"x"}), Error);
  EXPECT_THROW(build_mpirun_argv(cpu_spec({0}), {"x"}), Error);
  EXPECT_THROW(build_mpirun_argv(cpu_spec({1}), {}), Error);
  LaunchSpec s = cpu_spec({1, 1, 1});
  s.ranks[0].host = "a";
  s.ranks[1].host = "b";
  s.ranks[2].host = "a";
  try {
    build_mpirun_argv(s, {"x"});
    ADD_FAILURE() << "non-contiguous hosts accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ranks on host a are not contiguous"), std::string::npos) << e.what();
  }
}

TEST(MpirunTest, ShellQuoteJoinRoundTripsThroughSh) {
  EXPECT_EQ(shell_quote_join({"a", "b c", "it's", "", "$HOME"}), "a 'b c' 'it'\\''s' '' '$HOME'");
}

TEST(MpirunTest, GlmpipeEnvNamesAreCollected) {
  ::setenv("GLMPIPE_ZZ_TEST", "1", 1);
  auto names = glmpipe_env_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "GLMPIPE_ZZ_TEST"), names.end());
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
}

}  // namespace
}  // namespace glmpipe
