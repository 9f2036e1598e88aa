#include "stage/request_router.h"

#include <chrono>
#include <cstdio>
#include <random>

namespace glmpipe {

bool RequestRouter::Stream::next(TokenEvent& ev, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return false;
  ev = std::move(events_.front());
  events_.pop_front();
  return true;
}

void RequestRouter::Stream::push(const TokenEvent& ev) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(ev);
  }
  cv_.notify_all();
}

std::string RequestRouter::new_request_id(const std::string& prefix) {
  static const uint64_t salt = std::random_device{}();
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%08llx%06lld", static_cast<unsigned long long>(salt & 0xffffffffULL),
                static_cast<long long>(next_id_++));
  return prefix + buf;
}

std::shared_ptr<RequestRouter::Stream> RequestRouter::open(const std::string& request_id) {
  auto s = std::make_shared<Stream>();
  std::lock_guard<std::mutex> lock(mu_);
  streams_[request_id] = s;
  return s;
}

void RequestRouter::close(const std::string& request_id) {
  std::lock_guard<std::mutex> lock(mu_);
  streams_.erase(request_id);
}

void RequestRouter::dispatch(const TokenEvent& ev) {
  std::shared_ptr<Stream> s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = streams_.find(ev.request_id);
    if (it == streams_.end()) return;
    s = it->second;
  }
  s->push(ev);
}

TokenCallback RequestRouter::callback(TokenCallback observer) {
  return [this, observer](const TokenEvent& ev) {
    dispatch(ev);
    if (observer) observer(ev);
  };
}

void RequestRouter::fail_all(const std::string& error) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, s] : streams_) s->push(TokenEvent{id, s->seq_id, -1, true, "error", error});
}

size_t RequestRouter::open_count() {
  std::lock_guard<std::mutex> lock(mu_);
  return streams_.size();
}

std::vector<int64_t> RequestRouter::open_seq_ids() {
  std::vector<int64_t> ids;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, s] : streams_)
    if (s->seq_id >= 0) ids.push_back(s->seq_id);
  return ids;
}

}  // namespace glmpipe
