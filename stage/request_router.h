// RequestRouter: per-request delivery of the scheduler's TokenEvents. The Session takes a single
// TokenCallback (run on the stage-loop thread); servers and REPLs with several requests in flight
// register one Stream per request and read its events from their own threads:
//
//   RequestRouter router;
//   auto session = Session::create(opts, router.callback());
//   auto stream = router.open(id);                     // BEFORE submit: events may come at once
//   stream->seq_id = scheduler.submit(std::move(r));   // r.id == id
//   TokenEvent ev;
//   while (stream->next(ev, 100ms) ...)                // until ev.finished
//   router.close(id);
//
// Events are routed by TokenEvent::request_id (known before submit(), unlike the seq id, whose
// first event can race the return of submit()); events of unknown/closed requests are dropped.
// dispatch() never blocks on a reader (it may run with the scheduler's lock held).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "stage/scheduler.h"

namespace glmpipe {

class RequestRouter {
 public:
  class Stream {
   public:
    // Waits up to `timeout` for the next event; false on timeout.
    bool next(TokenEvent& ev, std::chrono::milliseconds timeout);
    void push(const TokenEvent& ev);
    std::atomic<int64_t> seq_id{-1};  // set by the submitter, for cancel()

   private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<TokenEvent> events_;
  };

  // A process-unique request id with the given prefix ("chatcmpl-", "health-", ...).
  std::string new_request_id(const std::string& prefix);
  std::shared_ptr<Stream> open(const std::string& request_id);
  void close(const std::string& request_id);
  void dispatch(const TokenEvent& ev);
  // A TokenCallback forwarding to dispatch() and then to `observer` (e.g. metrics), if given.
  TokenCallback callback(TokenCallback observer = {});

  // Ends every open stream with a finished "error" event (the stage loop died).
  void fail_all(const std::string& error);
  size_t open_count();
  // Sequence ids of the open streams that have been submitted (for cancel-all at shutdown).
  std::vector<int64_t> open_seq_ids();

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Stream>> streams_;
  std::atomic<int64_t> next_id_{0};
};

}  // namespace glmpipe
