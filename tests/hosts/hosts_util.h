// Helpers for tests across "hosts" made by tests/hosts/netns.sh run N (network namespaces on one
// private /24): the hosts' names, a deployment YAML whose ranks name their host and whose mpirun
// starts daemons through the netns launch agent over TCP on that /24 only, and running a command
// "on" a host.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace glmpipe::test {

struct NetnsHosts {
  std::string skip;                 // why there are no hosts ("" when there are)
  std::string tag, subnet, agent, script;
  std::vector<std::string> hosts;   // namespace names = host names
};

inline NetnsHosts netns_hosts() {
  NetnsHosts h;
  auto env = [](const char* n) { const char* v = std::getenv(n); return std::string(v ? v : ""); };
  h.skip = env("GLMPIPE_NETNS_SKIP");
  h.tag = env("GLMPIPE_NETNS_TAG");
  if (h.skip.empty() && h.tag.empty()) h.skip = "not started by tests/hosts/netns.sh run N -- TEST";
  h.subnet = env("GLMPIPE_NETNS_SUBNET");
  h.agent = env("GLMPIPE_NETNS_AGENT");
  h.script = env("GLMPIPE_NETNS_SCRIPT");
  std::istringstream in(env("GLMPIPE_NETNS_HOSTS"));
  for (std::string w; in >> w;) h.hosts.push_back(w);
  return h;
}

// A CPU deployment: rank i on hosts[host_of[i]], one thread each; TCP between hosts on the
// namespaces' /24 only (data and control connections), daemons started by the netns agent.
inline std::string hosts_deployment(const NetnsHosts& h, const std::string& path, const std::vector<int>& host_of,
                                    const std::string& extra_mpi = "") {
  std::string y = "model: {path: unused, dtype: float32}\nranks:\n";
  for (int i : host_of)
    y += "  - {device: cpu, max_memory: 2GiB, threads: 1, host: " + h.hosts.at(i) + "}\n";
  y += "placement: balanced\nkv_cache: {max_batch: 4, max_seq_len: 512}\nreserve: {cpu: 64MiB}\n";
  y += "mpi:\n  btl: [self, vader, tcp]\n  tcp_if_include: [" + h.subnet + "]\n";
  y += "  mca: {plm_rsh_agent: " + h.agent + ", plm_rsh_no_tree_spawn: 1}\n" + extra_mpi;
  std::ofstream(path) << y;
  return path;
}

// `cmd` run inside host `host`'s network namespace (where mpirun must start: only there are the
// other hosts reachable).
inline std::string on_host(const std::string& host, const std::string& cmd) {
  return "ip netns exec " + host + " sh -c '" + cmd + "'";
}

// "net:[4026531840]" of a host's namespace.
inline std::string host_netns_id(const std::string& host) {
  RunResult r = run_command("ip netns exec " + host + " readlink /proc/self/ns/net");
  return r.out.substr(0, r.out.find('\n'));
}

}  // namespace glmpipe::test
