// `glmpipe serve` under faults and abuse (issue 15), with real sockets on 127.0.0.1: a stalled rank
// ends the server (an idle one stays up); clients that hang up free their slots; slowloris
// connections, a full queue and oversized bodies get bounded, well-labelled answers.
#include <gtest/gtest.h>

#include <atomic>
#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include "checkpoint/tiny_model.h"
#include "tests/pipeline/server_proc.h"
#include "tests/test_util.h"

using namespace glmpipe;
using namespace glmpipe::test;
using json = nlohmann::json;

namespace {

// Greedy chat request: the random tiny model never emits <eop> without a repetition penalty, so
// the answer runs to max_tokens or to the end of the context.
std::string chat(const std::string& extra = "") {
  return R"({"messages": [{"role": "user", "content": "hello world"}], "temperature": 0)" + extra + "}";
}

int connect_local(int port) {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(s);
    return -1;
  }
  return s;
}

// Sends a whole completion request on a raw socket and returns it (closing it = hanging up).
int send_request(int port, const std::string& body) {
  const int s = connect_local(port);
  if (s < 0) return s;
  const std::string req = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  send(s, req.data(), req.size(), MSG_NOSIGNAL);
  return s;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void expect_answer(const Http& h) {
  ASSERT_EQ(h.code, 200) << h.body;
  json j = json::parse(h.body);
  const std::string fr = j["choices"][0]["finish_reason"];
  EXPECT_TRUE(fr == "stop" || fr == "length") << fr;
}

// A slow single-process server (every step takes 40 ms more): 2 KV slots of 160 tokens, 2 more
// completions may queue, 16 HTTP threads, 4 s to send a request.
class ServeDefence : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(make_temp_dir("serve_defence"));
    const std::string model = make_tiny_chat_model(*dir_ + "/tinychat");
    server_ = new ServerProc(*dir_, "--model " + model + " --threads 1 --max-batch 2 --max-seq 160 --max-queue 2 "
                                    "--http-threads 16 --read-timeout 4", "GLMPIPE_SLOW_STEP_MS=40");
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(server_->wait_healthy(60)) << "server not healthy:\n" << server_->log(); }
  // Waits until no sequence is generating (the previous test's requests are gone).
  static bool settle(double seconds) {
    auto t0 = std::chrono::steady_clock::now();
    while (seconds_since(t0) < seconds) {
      if (sample(server_->get("/metrics").body, "glmpipe_active_sequences") == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  static std::string* dir_;
  static ServerProc* server_;
};
std::string* ServeDefence::dir_ = nullptr;
ServerProc* ServeDefence::server_ = nullptr;

TEST_F(ServeDefence, ClientsHangingUpOnNonStreamedRequestsAreCancelled) {
  const size_t before = count_of(server_->log(), "client went away before");
  std::vector<int> socks;
  for (int i = 0; i < 24; ++i) socks.push_back(send_request(server_->port(), chat(R"(, "max_tokens": 1000000000000)")));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // admitted and generating
  for (int s : socks) close(s);
  auto t0 = std::chrono::steady_clock::now();
  // Uncancelled, the admitted ones would hold the slots and the queue for 2 x 6 s (429 meanwhile).
  Http h;
  while (seconds_since(t0) < 5) {
    h = server_->post(chat(R"(, "max_tokens": 3)"), 5);
    if (h.code == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const double s = seconds_since(t0);
  expect_answer(h);
  EXPECT_LT(s, 5.0) << server_->log();
  std::cout << "[ measure  ] new request answered " << s << " s after 24 clients hung up" << std::endl;
  // All 4 admitted (2 generating, 2 queued: --max-batch 2 --max-queue 2) are cancelled; the rest got 429.
  EXPECT_GE(count_of(server_->log(), "client went away before") - before, 4u) << server_->log();
  EXPECT_TRUE(settle(5)) << "slots still generating after their clients left:\n" << server_->log();
}

TEST_F(ServeDefence, MaxTokensIsClampedToTheContextLeft) {
  ASSERT_TRUE(settle(10));
  auto h = server_->post(chat(R"(, "max_tokens": 1000000000000)"), 60);
  ASSERT_EQ(h.code, 200) << h.body;
  json j = json::parse(h.body);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["total_tokens"], 160) << h.body;  // prompt + answer fill the 160-token context
}

TEST_F(ServeDefence, FullQueueGets429WithRetryAfterAndHealthStays200) {
  ASSERT_TRUE(settle(10));
  std::vector<int> socks;  // 2 generating + 2 queued = the bound
  for (int i = 0; i < 4; ++i) socks.push_back(send_request(server_->port(), chat(R"(, "max_tokens": 100)")));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::string f = *dir_ + "/over.json";
  std::ofstream(f) << chat(R"(, "max_tokens": 3)");
  auto r = run_command("curl -s -i --max-time 10 -H 'Content-Type: application/json' --data-binary @" + f + " " +
                       server_->url("/v1/chat/completions"));
  EXPECT_NE(r.out.find("HTTP/1.1 429"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Retry-After: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rate_limit_exceeded"), std::string::npos) << r.out;
  // Every slot is busy: /health answers at once from the pipeline's progress, without a probe.
  auto t0 = std::chrono::steady_clock::now();
  auto health = server_->get("/health", 5);
  EXPECT_EQ(health.code, 200) << health.body;
  EXPECT_LT(seconds_since(t0), 5.0);
  EXPECT_EQ(json::parse(health.body, nullptr, false).value("busy", false), true) << health.body;
  for (int s : socks) close(s);
  EXPECT_TRUE(settle(5)) << server_->log();
}

// 40 connections that send their request head one byte a second: a real client is still served
// at once (the guard closes the oldest slow connections when the workers run short, and any that
// has not sent its request within --read-timeout).
TEST_F(ServeDefence, SlowlorisConnectionsDoNotDelayARealClient) {
  std::vector<int> slow;
  for (int i = 0; i < 40; ++i) {
    const int s = connect_local(server_->port());
    ASSERT_GE(s, 0);
    const std::string head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    send(s, head.data(), head.size(), MSG_NOSIGNAL);
    slow.push_back(s);
  }
  std::atomic<bool> stop{false};
  std::thread trickle([&] {
    for (int t = 0; t < 12 && !stop; ++t) {
      for (int s : slow) send(s, "X", 1, MSG_NOSIGNAL);
      for (int k = 0; k < 10 && !stop; ++k) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto t0 = std::chrono::steady_clock::now();
  auto models = server_->get("/v1/models", 10);
  auto answer = server_->post(chat(R"(, "max_tokens": 3)"), 10);
  const double s = seconds_since(t0);
  stop = true;
  trickle.join();
  int cut = 0;  // connections the server closed (end of stream or reset on our side)
  char b;
  for (int fd : slow) {
    const ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT);
    cut += n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    close(fd);
  }
  EXPECT_EQ(models.code, 200);
  expect_answer(answer);
  EXPECT_LT(s, 5.0) << server_->log();
  std::cout << "[ measure  ] real client served in " << s << " s beside 40 slowloris connections (" << cut
            << " of them closed by the server)" << std::endl;
  EXPECT_GT(cut, 0) << "the server closed no slow connection";
}

TEST_F(ServeDefence, ErrorStatusesSayWhatHappened) {
  const std::string f = *dir_ + "/big.json";
  std::ofstream(f) << std::string(9u << 20, ' ');
  auto r = run_command("curl -s --max-time 20 -H 'Content-Type: application/json' --data-binary @" + f +
                       " -w '\\n%{http_code}' " + server_->url("/v1/chat/completions"));
  EXPECT_NE(r.out.find("\n413"), std::string::npos) << r.out.substr(0, 300);
  EXPECT_NE(r.out.find("too large"), std::string::npos) << r.out.substr(0, 300);
  EXPECT_EQ(r.out.find("no route"), std::string::npos) << r.out.substr(0, 300);
  auto h = server_->get("/v1/nothing");
  EXPECT_EQ(h.code, 404);
  EXPECT_NE(h.body.find("no route for GET /v1/nothing"), std::string::npos) << h.body;
}

// A 3-rank server with a 3 s liveness bound: idle for longer than the bound it stays up (an idle
// pipeline is not a stall); with its middle rank SIGSTOPped it exits non-zero within 3 + 10 s,
// naming rank 1, and leaves no rank behind.
TEST(ServePipeline, IdleStaysUpStoppedMiddleRankEndsTheServer) {
  const double bound = 3;
  const std::string dir = make_temp_dir("serve_stop");
  const std::string model = make_tiny_chat_model(dir + "/tinychat");
  std::ofstream(dir + "/three.yaml") << "model: {path: unused, dtype: float32}\nranks:\n"
                                        "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                                        "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                                        "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                                        "placement: balanced\nkv_cache: {max_batch: 2, max_seq_len: 256}\n"
                                        "reserve: {cpu: 64MiB}\nmpi: {liveness_timeout_s: 30}\n";
  std::system(("mkdir -p " + dir + "/pids").c_str());
  // --liveness-timeout overrides the YAML's 30 s.
  ServerProc server(dir, "--config " + dir + "/three.yaml --model " + model + " --liveness-timeout 3",
                    "GLMPIPE_PID_DIR=" + dir + "/pids GLMPIPE_SLOW_STEP_MS=20");  // the stream below is still running
  ASSERT_TRUE(server.wait_healthy(90)) << server.log();
  expect_answer(server.post(chat(R"(, "max_tokens": 5)")));
  std::this_thread::sleep_for(std::chrono::duration<double>(2.5 * bound));  // idle, no request at all
  ASSERT_FALSE(server.exited()) << "an idle server ended:\n" << server.log();
  EXPECT_EQ(server.get("/health").code, 200) << server.log();
  expect_answer(server.post(chat(R"(, "max_tokens": 5)")));
  int ranks[3] = {0, 0, 0};
  for (int r = 0; r < 3; ++r) std::ifstream(dir + "/pids/rank" + std::to_string(r) + ".pid") >> ranks[r];
  ASSERT_GT(ranks[1], 0);
  // A long stream in flight while rank 1 stops (200 tokens at >= 20 ms each).
  const std::string f = dir + "/long";
  std::ofstream(f + ".json") << chat(R"(, "stream": true, "max_tokens": 200)");
  std::system(("curl -sN --max-time 60 -H 'Content-Type: application/json' --data-binary @" + f + ".json " +
               server.url("/v1/chat/completions") + " > " + f + ".out 2>&1 &").c_str());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(ranks[1], SIGSTOP), 0);
  const bool ended = server.wait_exit(bound + 30);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!ended || !process_gone(ranks[1], 0.1)) kill(ranks[1], SIGKILL);  // never leave a stopped rank behind
  ASSERT_TRUE(ended) << "server still running " << bound + 30 << " s after SIGSTOP:\n" << server.log();
  EXPECT_LT(s, bound + 10) << server.log();
  std::cout << "[ measure  ] serve exited " << s << " s after SIGSTOP of rank 1 (bound " << bound << " s)" << std::endl;
  EXPECT_NE(server.exit_code(), 0) << server.log();
  EXPECT_NE(server.log().find("rank 1 (stage 1) silent for"), std::string::npos) << "the stalled rank is not named:\n"
                                                                                << server.log();
  const double left = std::max(0.1, bound + 10 - s);
  for (int r = 0; r < 3; ++r)
    EXPECT_TRUE(process_gone(ranks[r], left)) << "rank " << r << " (pid " << ranks[r] << ") survived";
}

}  // namespace
