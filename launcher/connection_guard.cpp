#include "launcher/connection_guard.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <vector>

namespace glmpipe {

namespace {

// "ip:port" of a socket address (AF_INET / AF_INET6), "" for other families.
std::string addr_key(const sockaddr_storage& a, int* port_out) {
  char buf[INET6_ADDRSTRLEN] = {0};
  int port = -1;
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof(buf));
    port = ntohs(v4->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof(buf));
    port = ntohs(v6->sin6_port);
  } else {
    return "";
  }
  if (port_out) *port_out = port;
  return peer_key(buf, port);
}

// The peer of an accepted TCP connection on local port `port` ("" when `fd` is something else).
std::string accepted_peer(int fd, int port) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return "";
  sockaddr_storage local{}, peer{};
  socklen_t len = sizeof(local);
  int local_port = -1;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0 || addr_key(local, &local_port).empty() ||
      local_port != port)
    return "";
  len = sizeof(peer);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return "";  // the listener, or reset
  return addr_key(peer, nullptr);
}

// Accepted connections of the server on `port`: peer -> fd.
std::map<std::string, int> list_connections(int port) {
  std::map<std::string, int> out;
  DIR* d = opendir("/proc/self/fd");
  if (!d) return out;
  std::vector<int> fds;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    fds.push_back(std::atoi(e->d_name));
  }
  const int own = dirfd(d);
  for (int fd : fds) {
    if (fd == own) continue;
    std::string peer = accepted_peer(fd, port);
    if (!peer.empty()) out[peer] = fd;
  }
  closedir(d);
  return out;
}

}  // namespace

std::string peer_key(const std::string& addr, int port) { return addr + ":" + std::to_string(port); }

void ConnectionGuard::start(int port) {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  port_ = port;
  stop_ = false;
  thread_ = std::thread([this] { loop(); });
}

void ConnectionGuard::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ConnectionGuard::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    scan();
    cv_.wait_for(lock, opt_.scan_interval, [this] { return stop_; });
  }
}

void ConnectionGuard::close_conn(const std::string& peer, Conn& c, const char* why) {
  // The fd may have been closed and reused since the scan: shut it down only if it is still ours.
  if (c.fd < 0 || accepted_peer(c.fd, port_) != peer) return;
  shutdown(c.fd, SHUT_RDWR);
  spdlog::info("http: closing the connection from {}: {}", peer, why);
  c.fd = -1;
}

void ConnectionGuard::scan() {
  const auto now = Clock::now();
  const auto live = list_connections(port_);
  for (auto it = conns_.begin(); it != conns_.end();) {  // forget closed connections
    auto found = live.find(it->first);
    if (found != live.end()) {
      it->second.fd = found->second;
      it->second.missed_scans = 0;
      ++it;
    } else if (it->second.busy && ++it->second.missed_scans < 3) {
      it->second.fd = -1;  // a handler still runs: peer_closed() reports it gone after 2 misses
      ++it;
    } else {
      it = conns_.erase(it);
    }
  }
  std::vector<std::pair<Clock::time_point, std::string>> idle;  // not inside a handler, oldest first
  for (const auto& [peer, fd] : live) {
    Conn& c = conns_[peer];  // new ones start now
    c.fd = fd;
    if (!c.busy) idle.emplace_back(c.since, peer);
  }
  std::sort(idle.begin(), idle.end());
  size_t open = live.size();
  for (auto& [since, peer] : idle) {
    Conn& c = conns_[peer];
    if (now - since > opt_.request_deadline) {
      close_conn(peer, c, "no complete request within the read deadline");
      expired_total_ += 1;
      --open;
    } else if (opt_.max_connections > 1 && open + 1 > static_cast<size_t>(opt_.max_connections)) {
      close_conn(peer, c, "too many connections (the oldest idle or slow one goes first)");
      shed_total_ += 1;
      --open;
    }
  }
}

void ConnectionGuard::request_started(const std::string& addr, int port) {
  std::lock_guard<std::mutex> lock(mu_);
  Conn& c = conns_[peer_key(addr, port)];
  c.busy = true;
  c.missed_scans = 0;
}

void ConnectionGuard::request_done(const std::string& addr, int port) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = conns_.find(peer_key(addr, port));
  if (it == conns_.end()) return;
  it->second.busy = false;
  it->second.since = Clock::now();
}

bool ConnectionGuard::peer_closed(const std::string& addr, int port) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = conns_.find(peer_key(addr, port));
  if (it == conns_.end()) return false;  // not seen yet: assume open
  Conn& c = it->second;
  if (c.fd < 0) return c.missed_scans >= 2;
  char b;
  const ssize_t n = recv(c.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;                                   // FIN: the client closed
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;  // reset
  return false;
}

}  // namespace glmpipe
