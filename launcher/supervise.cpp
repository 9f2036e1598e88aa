#include "launcher/supervise.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace glmpipe {

namespace {

volatile sig_atomic_t g_child = 0;
volatile sig_atomic_t g_forward_as = SIGUSR1;

extern "C" void forward_signal(int) {
  const int saved = errno;
  if (g_child > 0) kill(g_child, g_forward_as);
  errno = saved;
}

// In the child, between fork and exec: only async-signal-safe calls.
[[noreturn]] void exec_child(std::vector<char*>& argv, int parent) {
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
  const int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaction(sig, &dfl, nullptr);
  execvp(argv[0], argv.data());
  _exit(127);
}

}  // namespace

int run_supervised(const std::vector<std::string>& args, int forward_as) {
  GLMPIPE_CHECK(!args.empty()) << "run_supervised: empty command line";
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  g_forward_as = forward_as;
  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaction(sig, &sa, nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  GLMPIPE_CHECK(pid >= 0) << "cannot fork to start " << args[0] << ": " << std::strerror(errno);
  if (pid == 0) exec_child(argv, parent);
  g_child = pid;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    GLMPIPE_CHECK(errno == EINTR) << "waiting for " << args[0] << " (pid " << pid << "): " << std::strerror(errno);
  }
  g_child = 0;
  if (WIFEXITED(status)) {
    GLMPIPE_CHECK(WEXITSTATUS(status) != 127) << "cannot run " << args[0] << " (not installed or not on PATH?)";
    return WEXITSTATUS(status);
  }
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
}

}  // namespace glmpipe
