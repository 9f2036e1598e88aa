// A `glmpipe serve` process in the background for the server tests (serve_test, serve_faults_test):
// started through sh on a free 127.0.0.1 port, its pid, exit code and log in files of a directory,
// driven with curl.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "tests/test_util.h"

namespace glmpipe::test {

inline int free_port() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  close(s);
  return port;
}

struct Http {
  int code = 0;
  std::string body;
};

// A `glmpipe serve` process in the background: its pid, exit code and log in files of `dir`.
class ServerProc {
 public:
  ServerProc(const std::string& dir, const std::string& args, const std::string& env = "") : dir_(dir) {
    port_ = free_port();
    const std::string cmd = "sh -c '" + env + " " + test::glmpipe_bin() + " serve " + args + " --port " +
                            std::to_string(port_) + " > " + dir + "/server.log 2>&1 & echo $! > " + dir +
                            "/server.pid; wait $!; echo $? > " + dir + "/server.rc' &";
    std::system(cmd.c_str());
    for (int i = 0; i < 100 && !test::file_exists(dir + "/server.pid"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream(dir + "/server.pid") >> pid_;
  }
  ~ServerProc() {
    if (pid_ > 0 && !exited()) {  // SIGTERM first: mpirun then takes its ranks down too
      kill(pid_, SIGTERM);
      if (!wait_exit(10)) kill(pid_, SIGKILL);
    }
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  Http get(const std::string& path, int timeout_s = 20) const {
    return parse(test::run_command("curl -s --max-time " + std::to_string(timeout_s) + " -w '\\n%{http_code}' " + url(path)));
  }
  Http post(const std::string& body, int timeout_s = 60) {
    const std::string f = dir_ + "/body" + std::to_string(n_++) + ".json";
    std::ofstream(f) << body;
    return parse(test::run_command("curl -sN --max-time " + std::to_string(timeout_s) +
                                   " -H 'Content-Type: application/json' --data-binary @" + f + " -w '\\n%{http_code}' " +
                                   url("/v1/chat/completions")));
  }
  // Waits for /health = 200; false after `seconds`.
  bool wait_healthy(int seconds) const {
    auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(seconds)) {
      if (exited()) return false;
      if (get("/health", 10).code == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return false;
  }
  bool exited() const { return test::file_exists(dir_ + "/server.rc"); }
  int exit_code() const {
    int rc = -1;
    std::ifstream(dir_ + "/server.rc") >> rc;
    return rc;
  }
  bool wait_exit(double seconds) const {
    auto t0 = std::chrono::steady_clock::now();
    while (!exited() && std::chrono::steady_clock::now() - t0 < std::chrono::duration<double>(seconds))
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return exited();
  }
  std::string log() const { return test::read_file(dir_ + "/server.log"); }
  int pid() const { return pid_; }
  int port() const { return port_; }

 private:
  static Http parse(const test::RunResult& r) {
    Http h;
    const auto nl = r.out.rfind('\n');
    if (nl == std::string::npos) return h;
    h.code = std::atoi(r.out.c_str() + nl + 1);
    h.body = r.out.substr(0, nl);
    return h;
  }
  std::string dir_;
  int port_ = 0, pid_ = 0, n_ = 0;
};

// The value of an unlabelled Prometheus sample.
inline double sample(const std::string& text, const std::string& name) {
  std::istringstream s(text);
  std::string line;
  while (std::getline(s, line))
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  return -1;
}

inline size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

inline bool process_gone(int pid, double seconds) {
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::duration<double>(seconds)) {
    if (kill(pid, 0) != 0 && errno == ESRCH) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

}  // namespace glmpipe::test
