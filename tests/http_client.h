// Test helpers for the OpenAI API tests: a `glmpipe serve` process that POSTs JSON to any path
// (real HTTP on 127.0.0.1, curl), and server-sent-event parsing. (serve_test's ServerProc in
// tests/pipeline/server_proc.h only posts chat completions.)
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/pipeline/server_proc.h"
#include "tests/test_util.h"

namespace glmpipe::test {

struct HttpReply {
  int code = 0;
  std::string body;
  nlohmann::json json() const { return nlohmann::json::parse(body, nullptr, false); }
};

// The JSON payloads of an SSE body, in order; `done` tells whether it ended with "data: [DONE]".
inline std::vector<nlohmann::json> sse_events(const std::string& body, bool* done = nullptr) {
  std::vector<nlohmann::json> out;
  std::istringstream s(body);
  std::string line, last;
  while (std::getline(s, line)) {
    if (line.empty()) continue;
    last = line;
    if (line.rfind("data: ", 0) != 0 || line == "data: [DONE]") continue;
    out.push_back(nlohmann::json::parse(line.substr(6), nullptr, false));
  }
  if (done) *done = last == "data: [DONE]";
  return out;
}

// A `glmpipe serve ARGS --port P` process in the background; its log in DIR/server.log.
class ServeProcess {
 public:
  ServeProcess(const std::string& dir, const std::string& args) : dir_(dir) {
    port_ = free_port();
    const std::string cmd = "sh -c '" + glmpipe_bin() + " serve " + args + " --port " + std::to_string(port_) + " > " +
                            dir + "/server.log 2>&1 & echo $! > " + dir + "/server.pid; wait $!; echo $? > " + dir +
                            "/server.rc' &";
    std::system(cmd.c_str());
    for (int i = 0; i < 100 && !file_exists(dir + "/server.pid"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream(dir + "/server.pid") >> pid_;
  }
  ~ServeProcess() {
    if (pid_ <= 0 || exited()) return;
    kill(pid_, SIGTERM);  // mpirun takes its ranks down too
    for (int i = 0; i < 200 && !exited(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (!exited()) kill(pid_, SIGKILL);
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  HttpReply get(const std::string& path, int timeout_s = 20) const {
    return parse(run_command("curl -s --max-time " + std::to_string(timeout_s) + " -w '\\n%{http_code}' " + url(path)));
  }
  HttpReply post(const std::string& path, const std::string& body, int timeout_s = 120) {
    const std::string f = dir_ + "/body" + std::to_string(n_++) + ".json";
    std::ofstream(f) << body;
    return parse(run_command("curl -sN --max-time " + std::to_string(timeout_s) +
                             " -H 'Content-Type: application/json' --data-binary @" + f + " -w '\\n%{http_code}' " +
                             url(path)));
  }
  HttpReply post(const std::string& path, const nlohmann::json& body) { return post(path, body.dump()); }
  bool wait_healthy(int seconds) const {
    auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(seconds)) {
      if (exited()) return false;
      if (get("/health", 10).code == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return false;
  }
  bool exited() const { return file_exists(dir_ + "/server.rc"); }
  std::string log() const { return read_file(dir_ + "/server.log"); }
  int port() const { return port_; }

 private:
  static HttpReply parse(const RunResult& r) {
    HttpReply h;
    const auto nl = r.out.rfind('\n');
    if (nl == std::string::npos) return h;
    h.code = std::atoi(r.out.c_str() + nl + 1);
    h.body = r.out.substr(0, nl);
    return h;
  }
  std::string dir_;
  int port_ = 0, pid_ = 0, n_ = 0;
};

}  // namespace glmpipe::test
