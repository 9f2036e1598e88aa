// ConnectionGuard: read deadlines and a connection cap for the HTTP server (slowloris), and
// disconnect detection for its handlers.
//
// cpp-httplib 0.11 serves each connection on one worker thread and bounds each read only by its
// read timeout, so a client that trickles one header byte every few seconds pins a worker for
// ever, and as many such clients as there are workers take the server offline. httplib does not
// hand out its accepted sockets, so the guard finds them itself: one thread lists this process's
// sockets whose local port is the server's (/proc/self/fd, getsockname/getpeername) every
// `scan_interval` and keys them by peer address "ip:port" (= httplib's remote_addr/remote_port).
//  * Read deadline: a connection that has not delivered a complete request (head and body) within
//    `request_deadline` of being seen, or of its previous response (keep-alive), is shut down
//    (shutdown(2): its worker's read fails at once and the worker is free again).
//  * Cap: when `max_connections - 1` or more connections are open, the oldest ones that are not
//    inside a handler are shut down first, so that a worker stays free for a new client.
//  * peer_closed(): a handler polls it while it waits for tokens, to cancel a request whose
//    client hung up (non-streamed responses write nothing until the end, so httplib cannot tell).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace glmpipe {

struct ConnectionGuardOptions {
  std::chrono::milliseconds request_deadline{10000};  // head + body of one request
  int max_connections = 16;                           // = the HTTP worker threads
  std::chrono::milliseconds scan_interval{200};
};

class ConnectionGuard {
 public:
  explicit ConnectionGuard(ConnectionGuardOptions options) : opt_(options) {}
  ~ConnectionGuard() { stop(); }
  ConnectionGuard(const ConnectionGuard&) = delete;
  ConnectionGuard& operator=(const ConnectionGuard&) = delete;

  // Watches the accepted connections of the server listening on `port`.
  void start(int port);
  void stop();  // idempotent

  // From the server's hooks: a request's head and body are in (pre-routing) / its response is
  // written (logger). Requests in between are never shut down by the guard.
  void request_started(const std::string& addr, int port);
  void request_done(const std::string& addr, int port);
  // True when the client of this connection closed or reset it (or it is gone).
  bool peer_closed(const std::string& addr, int port);

  int64_t shed_total() const { return shed_total_; }       // shut down by the cap
  int64_t expired_total() const { return expired_total_; } // shut down by the read deadline

 private:
  using Clock = std::chrono::steady_clock;
  struct Conn {
    int fd = -1;
    Clock::time_point since = Clock::now();  // seen, or last response written
    bool busy = false;                       // inside a handler
    int missed_scans = 0;                    // scans that did not find it (busy entries only)
  };
  void loop();
  void scan();  // with mu_ held
  void close_conn(const std::string& peer, Conn& c, const char* why);

  ConnectionGuardOptions opt_;
  int port_ = -1;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::map<std::string, Conn> conns_;  // by peer "ip:port"
  std::thread thread_;
  std::atomic<int64_t> shed_total_{0}, expired_total_{0};
};

// "ip:port" as the guard and httplib spell a peer.
std::string peer_key(const std::string& addr, int port);

}  // namespace glmpipe
