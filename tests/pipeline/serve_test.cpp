// `glmpipe serve`: the OpenAI-compatible server driven with curl, as a client would. A tiny random
// model with the tiny test tokenizer (tests/data/tiny_chatglm.model as ice_text.model); the model's
// special ids are rewritten to the tokenizer's so that prompts have the GLM layout and <eop> stops.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "checkpoint/tiny_model.h"
#include "model/chat_prompt.h"
#include "model/tokenizer.h"
#include "tests/pipeline/server_proc.h"
#include "tests/test_util.h"

using namespace glmpipe;
using namespace glmpipe::test;
using json = nlohmann::json;

namespace {

json chat_body(const std::string& extra = "") {
  return json::parse(R"({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello world"}],
                        "max_tokens": 12, "temperature": 0.8, "top_p": 0.9, "seed": 3)" + extra + "}");
}

// A client that goes away mid-stream: POSTs a streaming request on a raw socket, reads until
// `events` SSE data lines have arrived, then closes the connection. Returns the data lines read.
size_t stream_then_hang_up(int port, const std::string& body, size_t events) {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(s);
    return 0;
  }
  timeval tv{20, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const std::string req = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  send(s, req.data(), req.size(), MSG_NOSIGNAL);
  std::string got;
  char buf[4096];
  while (count_of(got, "data: ") < events) {
    const ssize_t n = recv(s, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  close(s);
  return count_of(got, "data: ");
}

void expect_error(const Http& h, int status, const std::string& param, const std::string& what) {
  EXPECT_EQ(h.code, status) << what << ": " << h.body;
  json j = json::parse(h.body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("error")) << what << ": " << h.body;
  EXPECT_TRUE(j["error"]["message"].is_string()) << what;
  EXPECT_EQ(j["error"]["type"], "invalid_request_error") << what;
  EXPECT_TRUE(j["error"].contains("code")) << what;
  if (!param.empty()) EXPECT_EQ(j["error"]["param"], param) << what;
}

class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(test::make_temp_dir("serve"));
    model_ = new std::string(test::make_tiny_chat_model(*dir_ + "/tinychat"));
    // --repetition-penalty: the random tiny model (tied head) otherwise repeats <sop> forever.
    server_ = new ServerProc(*dir_, "--model " + *model_ + " --threads 1 --max-batch 4 --max-seq 256 --repetition-penalty 5");
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(server_->wait_healthy(60)) << "server not healthy:\n" << server_->log(); }
  static std::string* dir_;
  static std::string* model_;
  static ServerProc* server_;
};
std::string* Serve::dir_ = nullptr;
std::string* Serve::model_ = nullptr;
ServerProc* Serve::server_ = nullptr;

void expect_completion(const Http& h) {
  ASSERT_EQ(h.code, 200) << h.body;
  json j = json::parse(h.body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_TRUE(j["id"].is_string());
  EXPECT_TRUE(j["created"].is_number_integer());
  EXPECT_EQ(j["model"], "tinychat");
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_TRUE(j["choices"][0]["message"]["content"].is_string());
  const std::string fr = j["choices"][0]["finish_reason"];
  EXPECT_TRUE(fr == "stop" || fr == "length") << fr;
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_GT(j["usage"]["completion_tokens"].get<int>(), 0);
  EXPECT_LE(j["usage"]["completion_tokens"].get<int>(), 12);
  EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());
}

TEST_F(Serve, NonStreamingCompletion) {
  auto h = server_->post(chat_body().dump());
  expect_completion(h);
  // Same seed, same answer; greedy works too.
  auto again = server_->post(chat_body().dump());
  ASSERT_EQ(again.code, 200);
  EXPECT_EQ(json::parse(again.body)["choices"][0]["message"], json::parse(h.body)["choices"][0]["message"]);
  expect_completion(server_->post(chat_body(R"(, "temperature": 0, "model": "tinychat")").dump()));
}

TEST_F(Serve, StreamingChunksEndWithDone) {
  auto h = server_->post(chat_body(R"(, "stream": true)").dump());
  ASSERT_EQ(h.code, 200) << h.body;
  std::istringstream s(h.body);
  std::string line, content, last;
  std::vector<json> chunks;
  while (std::getline(s, line)) {
    if (line.empty()) continue;
    ASSERT_EQ(line.rfind("data: ", 0), 0u) << "not an SSE data line: " << line;
    last = line;
    if (line == "data: [DONE]") continue;
    chunks.push_back(json::parse(line.substr(6)));
  }
  EXPECT_EQ(last, "data: [DONE]");
  ASSERT_GE(chunks.size(), 2u);
  for (const auto& c : chunks) {
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    EXPECT_EQ(c["model"], "tinychat");
    EXPECT_EQ(c["id"], chunks[0]["id"]);
  }
  EXPECT_EQ(chunks.front()["choices"][0]["delta"]["role"], "assistant");
  const std::string fr = chunks.back()["choices"][0]["finish_reason"];
  EXPECT_TRUE(fr == "stop" || fr == "length") << fr;
  for (size_t i = 0; i + 1 < chunks.size(); ++i) {
    EXPECT_TRUE(chunks[i]["choices"][0]["finish_reason"].is_null());
    if (i > 0) content += chunks[i]["choices"][0]["delta"]["content"].get<std::string>();
  }
  // The streamed pieces add up to the non-streamed answer for the same seed (which is
  // post-processed: whitespace strip, full-width punctuation).
  EXPECT_FALSE(content.empty());
  auto whole = json::parse(server_->post(chat_body().dump()).body);
  EXPECT_EQ(postprocess_response(content), whole["choices"][0]["message"]["content"].get<std::string>());
}

TEST_F(Serve, ConcurrentRequestsAllSucceed) {
  std::vector<std::string> outs;
  std::string cmd;
  for (int i = 0; i < 4; ++i) {
    const std::string f = *dir_ + "/conc" + std::to_string(i);
    std::ofstream(f + ".json") << chat_body(i % 2 ? R"(, "stream": true)" : "").dump();
    cmd += "curl -sN --max-time 60 -H 'Content-Type: application/json' --data-binary @" + f + ".json -o " + f +
           ".out -w '%{http_code}' " + server_->url("/v1/chat/completions") + " > " + f + ".code & ";
    outs.push_back(f);
  }
  auto r = test::run_command(cmd + "wait");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(test::read_file(outs[i] + ".code"), "200") << test::read_file(outs[i] + ".out");
    const std::string body = test::read_file(outs[i] + ".out");
    if (i % 2)
      EXPECT_NE(body.find("data: [DONE]"), std::string::npos) << body;
    else
      expect_completion(Http{200, body});
  }
}

TEST_F(Serve, MalformedInputIs4xxAndServerKeepsServing) {
  expect_error(server_->post("{not json"), 400, "", "malformed JSON");
  expect_error(server_->post("[1, 2]"), 400, "", "not an object");
  expect_error(server_->post(R"({"max_tokens": 5})"), 400, "messages", "missing messages");
  expect_error(server_->post(R"({"messages": []})"), 400, "messages", "empty messages");
  expect_error(server_->post(R"({"messages": [{"role": "user"}]})"), 400, "messages", "message without content");
  expect_error(server_->post(R"({"messages": [{"role": "assistant", "content": "hi"}]})"), 400, "messages",
               "last message not from the user");
  expect_error(server_->post(chat_body(R"(, "model": "gpt-4")").dump()), 404, "model", "unknown model");
  expect_error(server_->post(chat_body(R"(, "temperature": -0.5)").dump()), 400, "temperature", "temperature < 0");
  expect_error(server_->post(chat_body(R"(, "top_p": 0)").dump()), 400, "top_p", "top_p = 0");
  expect_error(server_->post(chat_body(R"(, "top_p": 1.5)").dump()), 400, "top_p", "top_p > 1");
  expect_error(server_->post(chat_body(R"(, "max_tokens": 0)").dump()), 400, "max_tokens", "max_tokens = 0");
  expect_error(server_->post(chat_body(R"(, "max_tokens": "ten")").dump()), 400, "max_tokens", "max_tokens string");
  expect_error(server_->post(chat_body(R"(, "temperature": "hot")").dump()), 400, "temperature", "temperature string");
  expect_error(server_->post(chat_body(R"(, "stream": "yes")").dump()), 400, "stream", "stream string");
  // Over-long prompt: the server runs with --max-seq 256.
  std::string lng;
  for (int i = 0; i < 400; ++i) lng += "hello world ";
  json big = chat_body();
  big["messages"][1]["content"] = lng;
  expect_error(server_->post(big.dump()), 400, "messages", "over-long prompt");
  big["stream"] = true;
  expect_error(server_->post(big.dump()), 400, "messages", "over-long prompt, streaming");
  expect_completion(server_->post(chat_body().dump()));
}

TEST_F(Serve, MetricsCountRequestsAndTokens) {
  auto before = server_->get("/metrics");
  ASSERT_EQ(before.code, 200);
  for (const char* name : {"glmpipe_requests_total", "glmpipe_generated_tokens_total", "glmpipe_queue_length",
                           "glmpipe_active_sequences", "process_resident_memory_bytes",
                           "glmpipe_time_to_first_token_seconds_count", "glmpipe_inter_token_seconds_count"})
    EXPECT_GE(sample(before.body, name), 0) << name << " missing:\n" << before.body;
  for (const char* name : {"glmpipe_stage_compute_seconds_total{stage=\"0\"}", "glmpipe_stage_idle_seconds_total{stage=\"0\"}",
                           "glmpipe_stage_send_seconds_total{stage=\"0\"}", "glmpipe_stage_recv_seconds_total{stage=\"0\"}",
                           "glmpipe_time_to_first_token_seconds_bucket{le=\"+Inf\"}"})
    EXPECT_NE(before.body.find(name), std::string::npos) << name << " missing";
  expect_completion(server_->post(chat_body().dump()));
  auto after = server_->get("/metrics");
  EXPECT_EQ(sample(after.body, "glmpipe_requests_total"), sample(before.body, "glmpipe_requests_total") + 1);
  EXPECT_GT(sample(after.body, "glmpipe_generated_tokens_total"), sample(before.body, "glmpipe_generated_tokens_total"));
  EXPECT_EQ(sample(after.body, "glmpipe_time_to_first_token_seconds_count"),
            sample(before.body, "glmpipe_time_to_first_token_seconds_count") + 1);
  EXPECT_GT(sample(after.body, "process_resident_memory_bytes"), 1e6);
}

TEST_F(Serve, ModelsAndUnknownRoutes) {
  auto h = server_->get("/v1/models");
  ASSERT_EQ(h.code, 200);
  json j = json::parse(h.body);
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 1u);
  EXPECT_EQ(j["data"][0]["id"], "tinychat");
  EXPECT_EQ(j["data"][0]["object"], "model");
  auto health = server_->get("/health");
  EXPECT_EQ(health.code, 200);
  EXPECT_EQ(json::parse(health.body)["status"], "ok");
  EXPECT_EQ(server_->get("/v1/nothing").code, 404);
}

TEST_F(Serve, ClientHangingUpMidStreamFreesItsSlot) {
  // As many abandoned streams as the server has KV slots (--max-batch 4): a slot left behind would
  // keep one of the requests below waiting.
  const std::string body = chat_body(R"(, "stream": true, "max_tokens": 200, "temperature": 0)").dump();
  const size_t went_away_before = count_of(server_->log(), "client went away mid-stream");
  for (int i = 0; i < 4; ++i) ASSERT_GE(stream_then_hang_up(server_->port(), body, 2), 2u) << server_->log();
  double active = -1;
  for (int i = 0; i < 100 && active != 0; ++i) {  // the server notices at its next write
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    active = sample(server_->get("/metrics").body, "glmpipe_active_sequences");
  }
  EXPECT_EQ(active, 0) << server_->log();
  EXPECT_EQ(sample(server_->get("/metrics").body, "glmpipe_queue_length"), 0);
  EXPECT_GT(count_of(server_->log(), "client went away mid-stream"), went_away_before)
      << "no stream was cancelled: did every answer end before the client hung up?\n" << server_->log();
  // Every slot serves again: one more request than there are slots, then a stream to the end.
  for (int i = 0; i < 5; ++i) expect_completion(server_->post(chat_body().dump(), 30));
  EXPECT_NE(server_->post(chat_body(R"(, "stream": true)").dump(), 30).body.find("data: [DONE]"), std::string::npos);
}

// Last in this file's order: SIGTERM ends the suite's server.
TEST_F(Serve, ZzSigtermExitsZero) {
  // A long streaming request in flight while the signal arrives.
  const std::string f = *dir_ + "/long";
  std::ofstream(f + ".json") << chat_body(R"(, "stream": true, "max_tokens": 200)").dump();
  std::system(("curl -sN --max-time 60 -H 'Content-Type: application/json' --data-binary @" + f + ".json " +
               server_->url("/v1/chat/completions") + " > " + f + ".out 2>&1 &").c_str());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(server_->pid(), SIGTERM), 0);
  ASSERT_TRUE(server_->wait_exit(15)) << "server still running 15 s after SIGTERM:\n" << server_->log();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(server_->exit_code(), 0) << server_->log();
  EXPECT_LT(s, 8.0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_NE(test::read_file(f + ".out").find("data: [DONE]"), std::string::npos) << "in-flight stream not ended cleanly";
}

std::string two_rank_yaml(const std::string& dir) {
  std::ofstream(dir + "/two.yaml") << "model: {path: unused, dtype: float32}\nranks:\n"
                                      "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                                      "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                                      "placement: balanced\nkv_cache: {max_batch: 2, max_seq_len: 256}\n"
                                      "reserve: {cpu: 64MiB}\n";
  return dir + "/two.yaml";
}

// SIGTERM to a 2-rank server (the `glmpipe serve` process the user started, which supervises
// mpirun): the in-flight stream ends cleanly, the server exits 0 within seconds, no rank survives.
TEST(ServePipeline, SigtermExitsZeroAndLeavesNoRankBehind) {
  const std::string dir = test::make_temp_dir("serve_term");
  const std::string model = test::make_tiny_chat_model(dir + "/tinychat");
  std::system(("mkdir -p " + dir + "/pids").c_str());
  ServerProc server(dir, "--config " + two_rank_yaml(dir) + " --model " + model + " --repetition-penalty 5",
                    "GLMPIPE_PID_DIR=" + dir + "/pids");
  ASSERT_TRUE(server.wait_healthy(90)) << server.log();
  expect_completion(server.post(chat_body().dump()));
  int ranks[2] = {0, 0};
  for (int r = 0; r < 2; ++r) std::ifstream(dir + "/pids/rank" + std::to_string(r) + ".pid") >> ranks[r];
  ASSERT_GT(ranks[0], 0);
  ASSERT_GT(ranks[1], 0);
  const std::string f = dir + "/long";
  std::ofstream(f + ".json") << chat_body(R"(, "stream": true, "max_tokens": 200)").dump();
  std::system(("curl -sN --max-time 60 -H 'Content-Type: application/json' --data-binary @" + f + ".json " +
               server.url("/v1/chat/completions") + " > " + f + ".out 2>&1 &").c_str());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(server.pid(), SIGTERM), 0);
  ASSERT_TRUE(server.wait_exit(20)) << "server still running 20 s after SIGTERM:\n" << server.log();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(server.exit_code(), 0) << server.log();
  EXPECT_LT(s, 10.0) << server.log();
  for (int r = 0; r < 2; ++r) EXPECT_TRUE(process_gone(ranks[r], 3)) << "rank " << r << " (pid " << ranks[r] << ") survived";
  EXPECT_NE(server.log().find("server stopped"), std::string::npos) << server.log();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_NE(test::read_file(f + ".out").find("data: [DONE]"), std::string::npos) << "in-flight stream not ended cleanly";
}

// A 2-rank CPU pipeline behind the server; killing rank 1 takes /health (or the server) down.
TEST(ServePipeline, TwoRanksCompletionThenRankLoss) {
  const std::string dir = test::make_temp_dir("serve_pipe");
  const std::string model = test::make_tiny_chat_model(dir + "/tinychat");
  std::ofstream(dir + "/two.yaml") << "model: {path: unused, dtype: float32}\nranks:\n"
                                      "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                                      "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                                      "placement: balanced\nkv_cache: {max_batch: 2, max_seq_len: 256}\n"
                                      "reserve: {cpu: 64MiB}\n";
  std::system(("mkdir -p " + dir + "/pids").c_str());
  ServerProc server(dir, "--config " + dir + "/two.yaml --model " + model, "GLMPIPE_PID_DIR=" + dir + "/pids");
  ASSERT_TRUE(server.wait_healthy(90)) << server.log();
  expect_completion(server.post(chat_body().dump()));
  int rank1 = 0;
  std::ifstream(dir + "/pids/rank1.pid") >> rank1;
  ASSERT_GT(rank1, 0);
  ASSERT_EQ(kill(rank1, SIGKILL), 0);
  auto t0 = std::chrono::steady_clock::now();
  bool down = false;
  while (!down && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30)) {
    down = server.exited() || server.get("/health", 8).code != 200;
    if (!down) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(down) << "/health still 200 after rank 1 was killed:\n" << server.log();
  EXPECT_TRUE(server.wait_exit(30)) << "server still running after losing rank 1";
}

}  // namespace
