// wrapper: tests/hosts/netns.sh run 3 --
// Pipelines across hosts over TCP (issue 17): three network namespaces on one /24 are three hosts;
// `glmpipe forward|generate --config F` started on host 0 re-executes under mpirun, which starts
// its daemons on the hosts named by ranks[].host through the netns launch agent. fp32 logits must
// be bit-identical to one process and greedy ids the same, for one rank per host (2 and 3 hosts)
// and for 2 ranks on one host + 1 on another (shared memory within the host, TCP between).
#include <gtest/gtest.h>

#include "checkpoint/tiny_model.h"
#include "common/npy.h"
#include "tests/hosts/hosts_util.h"
#include "tests/test_util.h"

using namespace glmpipe;

namespace {

class HostsPipeline : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    h_ = test::netns_hosts();
    if (!h_.skip.empty()) return;
    dir_ = test::make_temp_dir("hosts");
    TinyModelOptions o;
    o.layers = 6;
    o.hidden = 64;
    o.heads = 4;
    o.vocab = 300;
    o.seed = 11;
    model_ = dir_ + "/model";
    make_tiny_model(model_, o);
  }
  void SetUp() override {
    if (!h_.skip.empty()) GTEST_SKIP() << "no hosts: " << h_.skip;
    ASSERT_GE(h_.hosts.size(), 3u);
  }
  // (name, host of each rank)
  static std::vector<std::pair<std::string, std::vector<int>>> layouts() {
    return {{"two_hosts", {0, 1}}, {"three_hosts", {0, 1, 2}}, {"two_plus_one", {0, 0, 1}}};
  }
  // Runs glmpipe on host 0 with rank pid/netns files in `pids`; returns the result.
  test::RunResult on_host0(const std::string& args, const std::string& pids) {
    std::system(("rm -rf " + pids + " && mkdir -p " + pids).c_str());
    return test::run_command(test::on_host(h_.hosts[0], "GLMPIPE_PID_DIR=" + pids + " timeout 120 " +
                                                            test::glmpipe_bin() + " " + args));
  }
  // Every rank ran in the namespace of the host its YAML entry names.
  void expect_ranks_on_hosts(const std::string& pids, const std::vector<int>& host_of) {
    for (size_t r = 0; r < host_of.size(); ++r) {
      std::string ns = test::read_file(pids + "/rank" + std::to_string(r) + ".netns");
      ns = ns.substr(0, ns.find('\n'));
      EXPECT_EQ(ns, test::host_netns_id(h_.hosts[host_of[r]])) << "rank " << r << " not on " << h_.hosts[host_of[r]];
    }
  }
  static inline test::NetnsHosts h_;
  static inline std::string dir_, model_;
  const std::string ids_ = "11,42,7,150,296,297,33,201,5,77";
};

TEST_F(HostsPipeline, ForwardLogitsBitIdenticalToOneProcess) {
  auto single = test::run_command(test::glmpipe_bin() + " forward --model " + model_ + " --threads 1 --ids " + ids_ +
                                  " --prefill 6 --out " + dir_ + "/single.npy");
  ASSERT_EQ(single.exit_code, 0) << single.err;
  const at::Tensor want = load_npy(dir_ + "/single.npy");
  for (const auto& [name, host_of] : layouts()) {
    SCOPED_TRACE(name);
    const std::string cfg = test::hosts_deployment(h_, dir_ + "/" + name + ".yaml", host_of);
    const std::string out = dir_ + "/" + name + ".npy", pids = dir_ + "/pids_" + name;
    auto r = on_host0("forward --config " + cfg + " --model " + model_ + " --ids " + ids_ + " --prefill 6 --out " + out, pids);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // The launch went through the hosts over TCP: the line names them and the transports.
    EXPECT_NE(r.err.find("--mca btl self,vader,tcp"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("--mca btl_tcp_if_include " + h_.subnet), std::string::npos) << r.err;
    expect_ranks_on_hosts(pids, host_of);
    const at::Tensor got = load_npy(out);
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_TRUE(at::equal(got, want)) << "max diff " << (got - want).abs().max().item<float>();
  }
}

TEST_F(HostsPipeline, GreedyIdsEqualOneProcess) {
  const std::string gen = " --ids 11,42,7,150,296,297 --max-new-tokens 12 --greedy --print-ids";
  auto single = test::run_command(test::glmpipe_bin() + " generate --model " + model_ + " --threads 1" + gen);
  ASSERT_EQ(single.exit_code, 0) << single.err;
  ASSERT_FALSE(single.out.empty());
  for (const auto& [name, host_of] : layouts()) {
    SCOPED_TRACE(name);
    const std::string cfg = test::hosts_deployment(h_, dir_ + "/g_" + name + ".yaml", host_of);
    const std::string pids = dir_ + "/gpids_" + name;
    auto r = on_host0("generate --config " + cfg + " --model " + model_ + gen, pids);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, single.out);
    expect_ranks_on_hosts(pids, host_of);
    for (size_t s = 0; s < host_of.size(); ++s)  // per-stage timings from every host
      EXPECT_NE(r.err.find("stage " + std::to_string(s) + "/" + std::to_string(host_of.size()) + ":"), std::string::npos)
          << r.err;
  }
}

}  // namespace
