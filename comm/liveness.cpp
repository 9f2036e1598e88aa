// Heartbeat protocol (see liveness.h): each heartbeat is int64[4] = {seq, kind, activity, step},
// kind 0 = alive, 1 = goodbye. One send per peer is outstanding at most (a peer that does not
// drain its receives cannot pile messages up here); one receive per peer is kept posted.
#include "comm/liveness.h"

#include <mpi.h>

#include <algorithm>
#include <sstream>

#include "comm/job_teardown.h"
#include "comm/world.h"
#include "common/error.h"
#include "common/log.h"

namespace glmpipe {

namespace {
using Clock = std::chrono::steady_clock;
constexpr int kHeartbeatTag = 77;
constexpr int64_t kAlive = 0, kGoodbye = 1;

int64_t now_ns() { return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count(); }

std::string fmt_s(double s) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(1);
  os << s << " s";
  return os.str();
}

}  // namespace

std::string LivenessMonitor::rank_name(int r) const {
  const bool host = r >= 0 && r < static_cast<int>(opt_.hosts.size()) && !opt_.hosts[r].empty();
  return "rank " + std::to_string(r) + " (stage " + std::to_string(r) + (host ? ", host " + opt_.hosts[r] : "") + ")";
}

const char* activity_name(Activity a) {
  switch (a) {
    case Activity::kStarting: return "starting";
    case Activity::kIdle: return "idle, waiting for work";
    case Activity::kComputing: return "computing";
    case Activity::kWaitingTokens: return "waiting for tokens";
    case Activity::kWaitingInput: return "receiving a micro-batch";
    case Activity::kSending: return "sending";
    case Activity::kFinishing: return "finishing";
  }
  return "?";
}

struct LivenessMonitor::Comm {
  MPI_Comm comm = MPI_COMM_NULL;
};

struct LivenessMonitor::Peer {
  int64_t sbuf[4] = {0, 0, 0, 0};
  int64_t rbuf[4] = {0, 0, 0, 0};
  MPI_Request sreq = MPI_REQUEST_NULL;
  MPI_Request rreq = MPI_REQUEST_NULL;
  std::atomic<int64_t> last_ns{0};
  std::atomic<int32_t> last_act{0};
  std::atomic<int64_t> last_step{-1};
  std::atomic<bool> gone{false};
};

LivenessMonitor::LivenessMonitor(const RankContext& ctx, LivenessOptions options)
    : ctx_(ctx), opt_(std::move(options)), comm_(std::make_unique<Comm>()) {
  GLMPIPE_CHECK(opt_.timeout > Duration::zero()) << "liveness timeout must be positive";
  if (opt_.interval <= Duration::zero())
    opt_.interval = std::clamp<Duration>(opt_.timeout / 6, std::chrono::milliseconds(20), std::chrono::seconds(1));
  if (ctx_.world() < 2 || !mpi_is_live()) return;
  if (ctx_.thread_level() != ThreadLevel::kMultiple) {
    spdlog::warn("liveness: MPI granted thread level {} (not multiple): no heartbeats; only the stage loop's waits are bounded",
                 thread_level_name(ctx_.thread_level()));
    return;
  }
  GLMPIPE_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_->comm)) << "liveness: duplicating MPI_COMM_WORLD";
  MPI_Comm_set_errhandler(comm_->comm, MPI_ERRORS_RETURN);
  const int64_t t = now_ns();
  for (int r = 0; r < ctx_.world(); ++r) {
    peers_.push_back(std::make_unique<Peer>());
    Peer& p = *peers_.back();
    p.last_ns = t;
    if (r == ctx_.rank()) continue;
    GLMPIPE_MPI_CHECK(MPI_Irecv(p.rbuf, 4, MPI_INT64_T, r, kHeartbeatTag, comm_->comm, &p.rreq))
        << "liveness: posting a heartbeat receive from rank " << r;
  }
  active_ = true;
  thread_ = std::thread([this] { loop(); });
}

LivenessMonitor::~LivenessMonitor() {
  try {
    stop(true);
  } catch (const std::exception& e) {
    spdlog::warn("liveness shutdown: {}", e.what());
  }
}

void LivenessMonitor::set_activity(Activity a, const char* what, int peer, int64_t step) {
  act_what_.store(what, std::memory_order_relaxed);
  act_peer_.store(peer, std::memory_order_relaxed);
  act_step_.store(step, std::memory_order_relaxed);
  act_.store(static_cast<int32_t>(a), std::memory_order_release);
}

std::string LivenessMonitor::activity_text() const {
  const auto a = static_cast<Activity>(act_.load(std::memory_order_acquire));
  const char* what = act_what_.load(std::memory_order_relaxed);
  const int peer = act_peer_.load(std::memory_order_relaxed);
  const int64_t step = act_step_.load(std::memory_order_relaxed);
  std::string s = what ? what : activity_name(a);
  if (step >= 0) s += " (micro-batch " + std::to_string(step) + ")";
  if (peer >= 0) s += " from " + rank_name(peer);
  return s;
}

void LivenessMonitor::send_heartbeats(int64_t kind) {
  const int64_t act = act_.load(std::memory_order_relaxed), step = act_step_.load(std::memory_order_relaxed);
  for (int r = 0; r < ctx_.world(); ++r) {
    if (r == ctx_.rank()) continue;
    Peer& p = *peers_[r];
    if (p.sreq != MPI_REQUEST_NULL) {
      int done = 0;
      MPI_Test(&p.sreq, &done, MPI_STATUS_IGNORE);
      if (!done) continue;  // the previous heartbeat is still on its way: do not pile up
    }
    p.sbuf[0] = ++seq_;
    p.sbuf[1] = kind;
    p.sbuf[2] = act;
    p.sbuf[3] = step;
    MPI_Isend(p.sbuf, 4, MPI_INT64_T, r, kHeartbeatTag, comm_->comm, &p.sreq);
  }
}

void LivenessMonitor::poll_peers(Clock::time_point now) {
  const int64_t t = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  for (int r = 0; r < ctx_.world(); ++r) {
    Peer& p = *peers_[r];
    if (r == ctx_.rank() || p.gone) continue;
    // Take every heartbeat that is in (several may be queued after a pause of this thread).
    for (int k = 0; k < 64 && p.rreq != MPI_REQUEST_NULL; ++k) {
      int flag = 0;
      if (MPI_Test(&p.rreq, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS || !flag) break;
      p.last_ns = t;
      p.last_act = static_cast<int32_t>(p.rbuf[2]);
      p.last_step = p.rbuf[3];
      if (p.rbuf[1] == kGoodbye) {
        p.gone = true;
        break;
      }
      MPI_Irecv(p.rbuf, 4, MPI_INT64_T, r, kHeartbeatTag, comm_->comm, &p.rreq);
    }
    if (p.gone) continue;
    const double silent = (t - p.last_ns.load()) * 1e-9;
    if (silent <= std::chrono::duration<double>(opt_.timeout).count()) continue;
    std::ostringstream msg;
    msg << "rank " << ctx_.rank() << "/" << ctx_.world() << " (stage " << ctx_.stage() << "): liveness: "
        << peer_text(r, silent) << "; bound " << std::chrono::duration<double>(opt_.timeout).count()
        << " s (mpi.liveness_timeout_s / --liveness-timeout); this rank was " << activity_text() << "; ending the job";
    p.gone = true;  // report each peer once
    note_silent_rank(r);  // named to the launcher if this rank ends the job (comm/job_teardown.h)
    if (opt_.on_silent) {
      opt_.on_silent(r, msg.str());
    } else {
      spdlog::error("{}", msg.str());
      spdlog::default_logger()->flush();
      abort_world_if_initialized(1);
    }
  }
}

void LivenessMonitor::loop() {
  auto next_send = Clock::now();
  const Duration nap = std::min<Duration>(opt_.interval / 2, std::chrono::milliseconds(50));
  while (!stop_.load()) {
    const auto now = Clock::now();
    if (now >= next_send) {
      send_heartbeats(kAlive);
      next_send = now + opt_.interval;
    }
    poll_peers(now);
    std::this_thread::sleep_for(nap);
  }
}

void LivenessMonitor::stop(bool goodbye) {
  if (stopped_) return;
  stopped_ = true;
  if (!active_) return;
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (!mpi_is_live()) return;
  if (goodbye) {
    // Wait briefly for the last heartbeats to go, then say goodbye (eager: completes locally).
    const auto until = Clock::now() + std::chrono::milliseconds(500);
    for (auto& p : peers_) {
      while (p->sreq != MPI_REQUEST_NULL && Clock::now() < until) {
        int done = 0;
        MPI_Test(&p->sreq, &done, MPI_STATUS_IGNORE);
        if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (p->sreq != MPI_REQUEST_NULL) MPI_Request_free(&p->sreq);
    }
    send_heartbeats(kGoodbye);
  }
  for (auto& p : peers_) {
    if (p->sreq != MPI_REQUEST_NULL) MPI_Request_free(&p->sreq);  // completes in the background
    if (p->rreq != MPI_REQUEST_NULL) {
      MPI_Cancel(&p->rreq);
      MPI_Wait(&p->rreq, MPI_STATUS_IGNORE);
    }
  }
  active_ = false;
}

double LivenessMonitor::silence_s(int peer) const {
  if (!active_ || peer < 0 || peer >= static_cast<int>(peers_.size()) || peer == ctx_.rank()) return 0;
  const Peer& p = *peers_[peer];
  if (p.gone) return 0;
  return (now_ns() - p.last_ns.load()) * 1e-9;
}

std::string LivenessMonitor::peer_text(int peer, double silent_s) const {
  const Peer& p = *peers_[peer];
  std::string s = rank_name(peer) + " silent for " + fmt_s(silent_s) + " (it last reported: " +
                  activity_name(static_cast<Activity>(p.last_act.load()));
  if (p.last_step.load() >= 0) s += " micro-batch " + std::to_string(p.last_step.load());
  return s + ")";
}

std::string LivenessMonitor::silent_peers(Duration older_than) const {
  std::string out;
  const double limit = std::chrono::duration<double>(older_than).count();
  for (int r = 0; r < static_cast<int>(peers_.size()); ++r) {
    const double s = silence_s(r);
    if (s > limit) out += (out.empty() ? "" : "; ") + peer_text(r, s);
  }
  return out;
}

int LivenessMonitor::first_silent_peer(Duration older_than) const {
  const double limit = std::chrono::duration<double>(older_than).count();
  for (int r = 0; r < static_cast<int>(peers_.size()); ++r)
    if (silence_s(r) > limit) return r;
  return -1;
}

std::string LivenessMonitor::peer_report() const {
  std::string out;
  for (int r = 0; r < static_cast<int>(peers_.size()); ++r) {
    if (r == ctx_.rank() || peers_[r]->gone) continue;
    const Peer& p = *peers_[r];
    std::string s = rank_name(r) + ": " + activity_name(static_cast<Activity>(p.last_act.load()));
    if (p.last_step.load() >= 0) s += " micro-batch " + std::to_string(p.last_step.load());
    out += (out.empty() ? "" : "; ") + s + ", heard " + fmt_s(silence_s(r)) + " ago";
  }
  return out;
}

bool LivenessMonitor::all_heard_within(Duration within) const { return silent_peers(within).empty(); }

}  // namespace glmpipe
