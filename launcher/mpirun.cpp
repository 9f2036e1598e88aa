#include "launcher/mpirun.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "common/error.h"

extern char** environ;

namespace glmpipe {

bool running_as_root() { return ::geteuid() == 0; }

std::vector<std::string> glmpipe_env_names() {
  std::vector<std::string> names;
  for (char** e = environ; e && *e; ++e) {
    if (std::strncmp(*e, "GLMPIPE_", 8) != 0) continue;
    const char* eq = std::strchr(*e, '=');
    names.emplace_back(*e, eq ? size_t(eq - *e) : std::strlen(*e));
  }
  std::sort(names.begin(), names.end());
  return names;
}

namespace {

std::string host_of(const RankLaunch& r) { return r.host.empty() ? "localhost" : r.host; }

std::vector<std::pair<std::string, std::string>> rank_env(const RankLaunch& r) {
  std::vector<std::pair<std::string, std::string>> env;
  if (r.device < 0) {
    env.emplace_back("OMP_NUM_THREADS", std::to_string(r.threads));
    env.emplace_back("GLMPIPE_THREADS", std::to_string(r.threads));
  } else {
    env.emplace_back("GLMPIPE_DEVICE", std::to_string(r.device));
  }
  env.insert(env.end(), r.env.begin(), r.env.end());
  return env;
}

void validate_spec(const LaunchSpec& spec) {
  GLMPIPE_CHECK(!spec.ranks.empty()) << "mpirun: the launch spec has no ranks";
  for (const auto& kv : spec.mca)
    GLMPIPE_CHECK(!kv.first.empty() && !kv.second.empty() && kv.first != "btl")
        << "mpirun: bad MCA parameter '" << kv.first << "' = '" << kv.second << "' (transports go in btl)";
  for (size_t i = 0; i < spec.ranks.size(); ++i) {
    const RankLaunch& r = spec.ranks[i];
    GLMPIPE_CHECK(r.threads >= 1) << "mpirun: rank " << i << " has " << r.threads << " threads";
    GLMPIPE_CHECK(r.device >= -1) << "mpirun: rank " << i << " has device " << r.device;
    for (const auto& kv : r.env)
      GLMPIPE_CHECK(!kv.first.empty() && kv.first.find('=') == std::string::npos)
          << "mpirun: rank " << i << ": bad environment variable name '" << kv.first << "'";
  }
}

}  // namespace

std::vector<std::string> build_mpirun_argv(const LaunchSpec& spec, const std::vector<std::string>& program_argv) {
  validate_spec(spec);
  GLMPIPE_CHECK(!program_argv.empty()) << "mpirun: no program to launch";
  const int np = int(spec.ranks.size());

  // Hosts in rank order, each with its rank count; a host may not reappear after another one.
  std::vector<std::pair<std::string, int>> hosts;
  for (int i = 0; i < np; ++i) {
    const std::string h = host_of(spec.ranks[i]);
    if (!hosts.empty() && hosts.back().first == h) {
      ++hosts.back().second;
      continue;
    }
    for (const auto& seen : hosts)
      GLMPIPE_CHECK(seen.first != h) << "mpirun: ranks on host " << h
                                     << " are not contiguous (rank " << i << "); mpirun maps ranks by slot, so "
                                     << "group ranks by host or pass a hostfile";
    hosts.emplace_back(h, 1);
  }
  const bool single_host = spec.hostfile.empty() && hosts.size() == 1;
  const bool local = single_host && hosts[0].first == "localhost";
  int cores = spec.local_cores > 0 ? spec.local_cores : int(std::thread::hardware_concurrency());
  if (cores <= 0) cores = 1;

  std::vector<std::string> argv = {spec.mpirun};
  if (spec.as_root) argv.push_back("--allow-run-as-root");
  std::string btl = single_host ? "self,vader" : "self,vader,tcp";
  if (!spec.btl.empty()) {
    btl.clear();
    for (const auto& b : spec.btl) btl += (btl.empty() ? "" : ",") + b;
  }
  argv.insert(argv.end(), {"--mca", "btl", btl});
  for (const auto& kv : spec.mca) argv.insert(argv.end(), {"--mca", kv.first, kv.second});
  if (local && np > cores) argv.push_back("--oversubscribe");
  bool multi_thread_cpu = std::any_of(spec.ranks.begin(), spec.ranks.end(),
                                      [](const RankLaunch& r) { return r.device < 0 && r.threads > 1; });
  if (spec.bind_to_none || multi_thread_cpu) argv.insert(argv.end(), {"--bind-to", "none"});
  if (!spec.hostfile.empty()) {
    argv.insert(argv.end(), {"--hostfile", spec.hostfile});
  } else if (!local) {
    std::string list;
    for (const auto& h : hosts) list += (list.empty() ? "" : ",") + h.first + ":" + std::to_string(h.second);
    argv.insert(argv.end(), {"--host", list});
  }
  for (const auto& name : spec.forward_env) argv.insert(argv.end(), {"-x", name});
  argv.insert(argv.end(), spec.extra_args.begin(), spec.extra_args.end());

  // App contexts: runs of consecutive ranks with the same environment.
  int i = 0;
  bool first = true;
  while (i < np) {
    const auto env = rank_env(spec.ranks[i]);
    int j = i + 1;
    while (j < np && rank_env(spec.ranks[j]) == env) ++j;
    if (!first) argv.push_back(":");
    first = false;
    argv.insert(argv.end(), {"-np", std::to_string(j - i)});
    for (const auto& kv : env) argv.insert(argv.end(), {"-x", kv.first + "=" + kv.second});
    argv.insert(argv.end(), program_argv.begin(), program_argv.end());
    i = j;
  }
  return argv;
}

std::string shell_quote_join(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    const bool plain = !a.empty() && std::all_of(a.begin(), a.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("-_./=:,+@%", c);
    });
    if (plain) {
      out += a;
      continue;
    }
    out += '\'';
    for (char c : a) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    out += '\'';
  }
  return out;
}

}  // namespace glmpipe
