// `glmpipe chat`: the interactive REPL driven through a pseudo-terminal (`script`) and through a
// pipe, with the tiny chat model (random weights + the tiny test tokenizer as ice_text.model).
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "checkpoint/tiny_model.h"
#include "model/chat_prompt.h"
#include "model/tokenizer.h"
#include "tests/test_util.h"

using namespace glmpipe;
using json = nlohmann::json;

namespace {

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

class Chat : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("chat");
    model_ = test::make_tiny_chat_model(dir_ + "/tinychat");
  }
  std::string chat_cmd(const std::string& extra = "") const {
    return test::glmpipe_bin() + " chat --model " + model_ + " --threads 1 --max-seq 512 --max-new-tokens 10 --seed 7"
           " --repetition-penalty 5" + extra;  // the random tiny model repeats <sop> without it
  }
  // Checks the transcript of: two turns, /history, /reset, /history, /exit.
  void check_transcript(const std::string& out) {
    EXPECT_GE(count(out, "ChatGLM: "), 2u) << out;
    const auto h1 = out.find("[Round 0]\nuser: hello there");
    ASSERT_NE(h1, std::string::npos) << "first /history lacks turn 1:\n" << out;
    EXPECT_NE(out.find("[Round 1]\nuser: how are you", h1), std::string::npos) << "first /history lacks turn 2:\n" << out;
    const auto cleared = out.find("(history cleared)", h1);
    ASSERT_NE(cleared, std::string::npos) << out;
    EXPECT_NE(out.find("(no history)", cleared), std::string::npos) << "/history after /reset:\n" << out;
    EXPECT_EQ(out.find("[Round 0]", cleared), std::string::npos) << out;
  }
  std::string dir_, model_;
  const std::string script_ = "hello there\nhow are you\n/history\n/reset\n/history\n/exit\n";
};

TEST_F(Chat, TwoTurnsHistoryResetThroughPipe) {
  std::ofstream(dir_ + "/in.txt") << script_;
  auto r = test::run_command("timeout 90 " + chat_cmd() + " < " + dir_ + "/in.txt");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  check_transcript(r.out);
  // The streamed answer, post-processed, is the one stored in the history.
  const auto a = r.out.find("ChatGLM: ") + 9;
  const std::string streamed = r.out.substr(a, r.out.find("\n\nuser> ", a) - a);
  const std::string head = "[Round 0]\nuser: hello there\nassistant: ";
  const auto h = r.out.find(head) + head.size();
  const std::string stored = r.out.substr(h, r.out.find("\n[Round 1]", h) - h);
  EXPECT_FALSE(stored.empty()) << r.out;
  EXPECT_EQ(postprocess_response(streamed), stored);
}

TEST_F(Chat, PseudoTerminalSession) {
  if (std::system("which script > /dev/null 2>&1") != 0) GTEST_SKIP() << "no `script` (util-linux)";
  // Feed the lines slowly into the pty, so that every turn is typed at a live prompt.
  std::string feed = "(sleep 2";
  std::istringstream lines(script_);
  std::string line;
  while (std::getline(lines, line)) feed += "; printf '%s\\n' '" + line + "'; sleep 1";
  feed += "; sleep 3)";
  auto r = test::run_command(feed + " | timeout 90 script -qfec \"" + chat_cmd() + "\" /dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::string out = r.out;
  for (size_t p; (p = out.find("\r\n")) != std::string::npos;) out.replace(p, 2, "\n");
  check_transcript(out);
}

TEST_F(Chat, CtrlCCancelsAnswerAndKeepsSession) {
  // A long answer (4000 tokens at a high temperature: <eop> is unlikely before the interrupt; if
  // it comes first the answer is simply in the history), interrupted, then /history and /exit.
  const std::string fifo = dir_ + "/in.fifo";
  ASSERT_EQ(std::system(("mkfifo " + fifo).c_str()), 0);
  const std::string cmd = "sh -c '" + test::glmpipe_bin() + " chat --model " + model_ +
                          " --threads 1 --max-seq 4096 --max-new-tokens 4000 --temperature 1.5 --top-k 0 --top-p 1 --seed 3 < " +
                          fifo + " > " + dir_ + "/out.txt 2> " + dir_ + "/err.txt & echo $! > " + dir_ +
                          "/pid; wait $!; echo $? > " + dir_ + "/rc' &";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ofstream in(fifo);  // blocks until the chat opens its end
  int pid = 0;
  for (int i = 0; i < 100 && pid == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream(dir_ + "/pid") >> pid;
  }
  ASSERT_GT(pid, 0);
  in << "tell me a long story\n" << std::flush;
  // Wait for the answer to start streaming, then interrupt it.
  auto t0 = std::chrono::steady_clock::now();
  while (test::read_file(dir_ + "/out.txt").find("ChatGLM: ") == std::string::npos &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  ASSERT_EQ(kill(pid, SIGINT), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_FALSE(test::file_exists(dir_ + "/rc")) << "SIGINT during an answer ended the session:\n" << test::read_file(dir_ + "/err.txt");
  in << "/history\n/exit\n" << std::flush;
  in.close();
  t0 = std::chrono::steady_clock::now();
  while (!test::file_exists(dir_ + "/rc") && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(test::file_exists(dir_ + "/rc")) << "chat did not exit";
  EXPECT_EQ(std::stoi(test::read_file(dir_ + "/rc")), 0) << test::read_file(dir_ + "/err.txt");
  const std::string out = test::read_file(dir_ + "/out.txt");
  const bool cancelled = out.find("(answer cancelled)") != std::string::npos;
  const bool finished_first = out.find("[Round 0]") != std::string::npos;
  EXPECT_TRUE(cancelled || finished_first) << out;
  if (cancelled) EXPECT_NE(out.find("(no history)"), std::string::npos) << "a cancelled answer entered the history:\n" << out;
}

TEST_F(Chat, CtrlCAtPromptExits) {
  const std::string fifo = dir_ + "/in.fifo";
  ASSERT_EQ(std::system(("mkfifo " + fifo).c_str()), 0);
  const std::string cmd = "sh -c '" + chat_cmd() + " < " + fifo + " > " + dir_ + "/out.txt 2>&1 & echo $! > " + dir_ +
                          "/pid; wait $!; echo $? > " + dir_ + "/rc' &";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ofstream in(fifo);
  auto t0 = std::chrono::steady_clock::now();
  while (test::read_file(dir_ + "/out.txt").find("user> ") == std::string::npos &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  int pid = 0;
  std::ifstream(dir_ + "/pid") >> pid;
  ASSERT_GT(pid, 0);
  ASSERT_EQ(kill(pid, SIGINT), 0);
  t0 = std::chrono::steady_clock::now();
  while (!test::file_exists(dir_ + "/rc") && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(test::file_exists(dir_ + "/rc")) << "SIGINT at the prompt did not exit";
  EXPECT_EQ(std::stoi(test::read_file(dir_ + "/rc")), 0) << test::read_file(dir_ + "/out.txt");
}

}  // namespace
