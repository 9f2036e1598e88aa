#include "launcher/supervise.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "comm/job_teardown.h"
#include "common/error.h"

namespace glmpipe {

namespace {

using Clock = std::chrono::steady_clock;

volatile sig_atomic_t g_child = 0;
volatile sig_atomic_t g_forward_as = 0;
volatile sig_atomic_t g_report = 0;  // 1 + encode_abort_report() of the first report, 0: none

extern "C" void forward_signal(int sig, siginfo_t* info, void*) {
  const int saved = errno;
  // SI_KERNEL: the terminal sent it to the foreground group, which the child shares unless own_group.
  const bool from_terminal = info && info->si_code == SI_KERNEL;
  if (g_child > 0 && (g_forward_as != 0 || !from_terminal)) kill(g_child, g_forward_as != 0 ? g_forward_as : sig);
  errno = saved;
}

extern "C" void on_report(int, siginfo_t* info, void*) {
  if (g_report == 0 && info) g_report = 1 + info->si_value.sival_int;
}

// In the child, between fork and exec: only async-signal-safe calls.
[[noreturn]] void exec_child(std::vector<char*>& argv, int parent, bool own_group) {
  if (own_group) setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
  if (own_group) {
    const int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
  }
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGTERM, SIGINT, SIGHUP, kLauncherSignal}) sigaction(sig, &dfl, nullptr);
  execvp(argv[0], argv.data());
  _exit(127);
}

// The direct children of `pid` (mpirun's local ranks and the launch agents of its daemons).
std::vector<pid_t> children_of(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> out;
  for (pid_t c; f >> c;) out.push_back(c);
  return out;
}

void install(int sig, void (*handler)(int, siginfo_t*, void*)) {
  struct sigaction sa {};
  sa.sa_sigaction = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART | SA_SIGINFO;
  sigaction(sig, &sa, nullptr);
}

// Polls for the child's exit; grace_s after a report, kills it and what it started here.
int wait_child(pid_t pid, const std::string& name, const SuperviseOptions& o, SupervisedExit& r) {
  Clock::time_point reported{};
  int status = 0;
  for (;;) {
    const pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) return status;
    GLMPIPE_CHECK(w == 0 || errno == EINTR) << "waiting for " << name << " (pid " << pid << "): " << std::strerror(errno);
    const auto now = Clock::now();
    if (g_report != 0 && !r.reported) {
      r.reported = true;
      decode_abort_report(g_report - 1, &r.reporter, &r.silent);
      reported = now;
    }
    if (r.reported && !r.ended_by_us && now - reported > std::chrono::duration<double>(o.grace_s)) {
      // SIGKILL, not SIGTERM: an aborting mpirun takes another signal as "forcibly terminate" and
      // (Open MPI 4.1) crashes in PMIx_Finalize on the way; its daemons end when it is gone.
      spdlog::warn("{} has not ended the job {:.0f} s after rank {} ended it: killing it", name, o.grace_s, r.reporter);
      for (pid_t c : children_of(pid)) kill(c, SIGKILL);
      kill(pid, SIGKILL);
      r.ended_by_us = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

SupervisedExit run_supervised(const std::vector<std::string>& args, const SuperviseOptions& o) {
  GLMPIPE_CHECK(!args.empty()) << "run_supervised: empty command line";
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  g_forward_as = o.forward_as;
  g_report = 0;
  const int handled[] = {SIGTERM, SIGINT, SIGHUP, kLauncherSignal};
  struct sigaction saved[4];
  for (int i = 0; i < 4; ++i) sigaction(handled[i], nullptr, &saved[i]);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) install(sig, forward_signal);
  install(kLauncherSignal, on_report);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  GLMPIPE_CHECK(pid >= 0) << "cannot fork to start " << args[0] << ": " << std::strerror(errno);
  if (pid == 0) exec_child(argv, parent, o.own_group);
  g_child = pid;
  SupervisedExit r;
  int status = 0;
  try {
    status = wait_child(pid, args[0], o, r);
  } catch (...) {
    g_child = 0;
    throw;
  }
  g_child = 0;
  for (int i = 0; i < 4; ++i) sigaction(handled[i], &saved[i], nullptr);
  if (WIFEXITED(status)) {
    GLMPIPE_CHECK(WEXITSTATUS(status) != 127) << "cannot run " << args[0] << " (not installed or not on PATH?)";
    r.status = WEXITSTATUS(status);
  } else {
    r.status = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
  }
  return r;
}

}  // namespace glmpipe
