#include "comm/job_teardown.h"

#include <fcntl.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

namespace glmpipe {

namespace {

std::atomic<int> g_silent{-1};
std::atomic<bool> g_done{false};

std::string link_of(const char* path) {
  char buf[128] = {0};
  const ssize_t n = readlink(path, buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, n) : "?";
}

// Field 22 of /proc/PID/stat (start time in clock ticks since boot: tells a process from a later
// one with the same pid) and its command name; "" when there is no such process.
std::string start_time_of(pid_t pid, std::string* comm) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(f, stat);
  const size_t open = stat.find('('), close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos) return "";
  if (comm) *comm = stat.substr(open + 1, close - open - 1);
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
  }
  return field;
}

// Waits (detached) until daemon `pid` with start time `start` has ended; after `grace` seconds
// sends it SIGTERM, after one more second SIGKILL.
constexpr const char* kWatcher =
    "d=$1 want=$2 n=$(($3 * 10)); "
    "alive() { read -r s < /proc/$d/stat || return 1; s=${s##*) }; set -- $s; [ \"$1\" != Z ] && [ \"${20}\" = \"$want\" ]; }; "
    "i=0; while [ $i -lt $n ]; do alive || exit 0; sleep 0.1; i=$((i + 1)); done; "
    "kill -TERM $d 2>/dev/null; i=0; while [ $i -lt 10 ]; do alive || exit 0; sleep 0.1; i=$((i + 1)); done; "
    "kill -KILL $d 2>/dev/null";

}  // namespace

bool watch_daemon(int daemon, int grace_seconds) {
  std::string comm;
  const std::string start = start_time_of(daemon, &comm);
  if (start.empty() || comm != "orted") return false;  // mpirun's own ranks (its host) need no watcher
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  for (int fd = 0; fd < 3; ++fd) posix_spawn_file_actions_addopen(&fa, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  const std::string pid_s = std::to_string(daemon), grace_s = std::to_string(grace_seconds);
  std::vector<std::string> args = {"sh", "-c", kWatcher, "glmpipe-daemon-watcher", pid_s, start, grace_s};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t watcher = 0;
  const int rc = posix_spawn(&watcher, "/bin/sh", &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return rc == 0;
}

namespace {

void tell_launcher(int rank) {
  const char* pid_s = std::getenv(kLauncherPidEnv);
  const char* host = std::getenv(kLauncherHostEnv);
  if (!pid_s || !host || host_identity() != host) return;
  const long pid = std::strtol(pid_s, nullptr, 10);
  if (pid <= 1) return;
  union sigval v;
  v.sival_int = encode_abort_report(rank, g_silent.load());
  sigqueue(static_cast<pid_t>(pid), kLauncherSignal, v);
}

}  // namespace

std::string host_identity() {
  char name[256] = {0};
  gethostname(name, sizeof(name) - 1);
  return std::string(name) + " " + link_of("/proc/self/ns/net") + " " + link_of("/proc/self/ns/pid");
}

int encode_abort_report(int reporter, int silent) { return reporter * 65536 + (silent + 1); }

void decode_abort_report(int value, int* reporter, int* silent) {
  *reporter = value / 65536;
  *silent = value % 65536 - 1;
}

void note_silent_rank(int rank) {
  int none = -1;
  g_silent.compare_exchange_strong(none, rank);
}

void before_job_abort(int rank) {
  if (g_done.exchange(true)) return;
  try {
    tell_launcher(rank);
    if (watch_daemon(getppid(), kDaemonGraceSeconds))
      spdlog::info("rank {}: this host's Open MPI daemon (orted, pid {}) is ended if it still runs {} s from now "
                   "(one cut off from mpirun would wait for ever)",
                   rank, getppid(), kDaemonGraceSeconds);
    spdlog::default_logger()->flush();
  } catch (...) {  // the job is ending: nothing here may stop the abort
  }
}

}  // namespace glmpipe
