// Multi-host deployment keys (issue 17 contract): ranks[].host, mpi.hostfile, mpi.btl (list),
// mpi.mca (map NAME -> VALUE), mpi.tcp_if_include; their errors name the file and the key; and the
// mpirun line `glmpipe --config F --dry-run` prints for them.
#include <gtest/gtest.h>

#include <fstream>

#include "common/error.h"
#include "planner/deployment.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

std::string yaml_error(const std::string& text) {
  try {
    parse_deployment(text, "hosts.yaml");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(DeploymentHosts, ContractKeys) {
  Deployment d = parse_deployment(R"(
model: {path: m, dtype: float32}
ranks:
  - {device: cpu, max_memory: 1GiB, host: node-a}
  - {device: cpu, max_memory: 1GiB, host: node-a}
  - {device: cpu, max_memory: 1GiB, host: node-b.cluster}
mpi:
  hostfile: my_hosts
  btl: [self, vader, tcp]
  tcp_if_include: [10.1.2.0/24, eth1]
  mca: {plm_rsh_agent: /opt/agent.sh, plm_rsh_no_tree_spawn: 1, oob_tcp_if_include: eth1}
)",
                                  "hosts.yaml");
  EXPECT_EQ(d.ranks[0].host, "node-a");
  EXPECT_EQ(d.ranks[2].host, "node-b.cluster");
  EXPECT_EQ(d.mpi.hostfile, "my_hosts");
  EXPECT_EQ(d.mpi.btl, (std::vector<std::string>{"self", "vader", "tcp"}));
  EXPECT_EQ(d.mpi.tcp_if_include, (std::vector<std::string>{"10.1.2.0/24", "eth1"}));
  using KV = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(d.mpi.mca, (KV{{"plm_rsh_agent", "/opt/agent.sh"}, {"plm_rsh_no_tree_spawn", "1"},
                           {"oob_tcp_if_include", "eth1"}}));  // file order
  // One word is a one-element list.
  Deployment one = parse_deployment("model: {path: m}\nranks: [{device: cpu, max_memory: 1GiB}]\n"
                                    "mpi: {btl: tcp, tcp_if_include: eth0}\n", "hosts.yaml");
  EXPECT_EQ(one.mpi.btl, (std::vector<std::string>{"tcp"}));
  EXPECT_EQ(one.mpi.tcp_if_include, (std::vector<std::string>{"eth0"}));
  Deployment none = parse_deployment("model: {path: m}\nranks: [{device: cpu, max_memory: 1GiB}]\n", "hosts.yaml");
  EXPECT_TRUE(none.mpi.btl.empty() && none.mpi.mca.empty() && none.mpi.tcp_if_include.empty());
}

TEST(DeploymentHosts, ErrorsNameFileAndKey) {
  const std::string head = "model: {path: m}\nranks: [{device: cpu, max_memory: 1GiB}]\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {head + "mpi: {btl: []}\n", "hosts.yaml: mpi.btl: must not be empty"},
      {head + "mpi: {btl: [self, 'tcp,vader']}\n", "hosts.yaml: mpi.btl[1]: \"tcp,vader\" is not a byte transport"},
      {head + "mpi: {btl: {a: b}}\n", "hosts.yaml: mpi.btl: must be a list of"},
      {head + "mpi: {mca: [plm_rsh_agent, ssh]}\n", "hosts.yaml: mpi.mca: must be a mapping"},
      {head + "mpi: {mca: {btl: tcp}}\n", "hosts.yaml: mpi.mca.btl: give the transports as mpi.btl"},
      {head + "mpi: {mca: {'bad name': 1}}\n", "hosts.yaml: mpi.mca.bad name: is not an MCA parameter name"},
      {head + "mpi: {mca: {plm_rsh_agent: [a, b]}}\n", "hosts.yaml: mpi.mca.plm_rsh_agent: must be a non-empty scalar"},
      {head + "mpi: {mca: {plm_rsh_agent: ''}}\n", "hosts.yaml: mpi.mca.plm_rsh_agent: must be a non-empty scalar"},
      {head + "mpi: {tcp_if_include: ['eth0; rm']}\n", "hosts.yaml: mpi.tcp_if_include[0]: \"eth0; rm\" is not an interface"},
      {head + "mpi: {btls: [tcp]}\n", "hosts.yaml: mpi.btls: unknown key"},
      {"model: {path: m}\nranks: [{device: cpu, max_memory: 1GiB, host: 'a b'}]\n",
       "hosts.yaml: ranks[0].host: \"a b\" is not a host name"},
      {"model: {path: m}\nranks: [{device: cpu, max_memory: 1GiB, host: [a]}]\n", "hosts.yaml: ranks[0].host: must be a string"},
  };
  for (const auto& [text, want] : cases) {
    const std::string err = yaml_error(text);
    EXPECT_NE(err.find(want), std::string::npos) << "yaml:\n" << text << "\nerror: " << err;
  }
}

// The CLI's mpirun line for a multi-host file: transports, MCA parameters in order, interface
// selection for both TCP channels, the host list built from the ranks' hosts.
TEST(DeploymentHosts, DryRunPrintsTheMpirunLine) {
  const std::string dir = test::make_temp_dir("hosts_dry");
  const std::string model = dir + "/model";
  auto mk = test::run_command(test::glmpipe_bin() + " make-tiny-model " + model + " --layers 3");
  ASSERT_EQ(mk.exit_code, 0) << mk.err;
  const std::string cfg = dir + "/three.yaml";
  std::ofstream(cfg) << "model: {path: " << model << ", dtype: float32}\nranks:\n"
                     << "  - {device: cpu, max_memory: 1GiB, threads: 1, host: h0}\n"
                     << "  - {device: cpu, max_memory: 1GiB, threads: 1, host: h0}\n"
                     << "  - {device: cpu, max_memory: 1GiB, threads: 1, host: h1}\n"
                     << "reserve: {cpu: 64MiB}\nkv_cache: {max_seq_len: 64}\n"
                     << "mpi: {tcp_if_include: 10.9.8.0/24, mca: {plm_rsh_agent: /x/agent.sh, plm_rsh_no_tree_spawn: 1}}\n";
  auto r = test::run_command(test::glmpipe_bin() + " forward --config " + cfg + " --ids 1,2,3 --out x.npy --dry-run");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string want_opts =
      "--mca btl self,vader,tcp --mca plm_rsh_agent /x/agent.sh --mca plm_rsh_no_tree_spawn 1 "
      "--mca btl_tcp_if_include 10.9.8.0/24 --mca oob_tcp_if_include 10.9.8.0/24 --bind-to none --host h0:2,h1:1";
  EXPECT_NE(r.out.find(want_opts), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("-np 3 -x OMP_NUM_THREADS=1"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("--dry-run"), std::string::npos) << r.out;

  // A hostfile replaces the host list; one that cannot be read is an error naming the key.
  std::string text = test::read_file(cfg);
  std::ofstream(dir + "/hf.yaml") << text.substr(0, text.find("mpi:")) << "mpi: {hostfile: " << dir << "/hosts, btl: [self, tcp]}\n";
  auto missing = test::run_command(test::glmpipe_bin() + " forward --config " + dir + "/hf.yaml --ids 1,2,3 --out x.npy --dry-run");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("hf.yaml: mpi.hostfile: cannot read " + dir + "/hosts"), std::string::npos) << missing.err;
  std::ofstream(dir + "/hosts") << "h0 slots=2\nh1 slots=1\n";
  auto hf = test::run_command(test::glmpipe_bin() + " forward --config " + dir + "/hf.yaml --ids 1,2,3 --out x.npy --dry-run");
  ASSERT_EQ(hf.exit_code, 0) << hf.err;
  EXPECT_NE(hf.out.find("--mca btl self,tcp --bind-to none --hostfile " + dir + "/hosts "), std::string::npos) << hf.out;
  EXPECT_EQ(hf.out.find("--host "), std::string::npos) << hf.out;
}

}  // namespace
}  // namespace glmpipe
