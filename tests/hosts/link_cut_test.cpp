// wrapper: tests/hosts/netns.sh run 3 --
// A cut link is a stall (issue 17): three hosts (network namespaces), one pipeline rank each; host
// 1's link goes down mid-generation (the switch side of its veth: no error, packets just stop).
// The liveness machinery (mpi.liveness_timeout_s) must end every process of the job on every host
// (the ranks, mpirun, Open MPI's daemons, glmpipe itself with a non-zero status) within the bound
// + 10 s and name the unreachable rank and its host; a batch job cut this way and resumed over the
// healed link completes exactly the ids that were missing. (mpirun and the cut host's daemon would
// wait for each other over the dead link for ever: glmpipe ends mpirun, and the cut host's rank
// its daemon, see comm/job_teardown.h.)
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include "checkpoint/tiny_model.h"
#include "tests/hosts/hosts_util.h"
#include "tests/test_util.h"

using namespace glmpipe;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr double kLiveness = 3.0;  // mpi.liveness_timeout_s of these deployments

std::string cut_mpi_keys() {
  return "  liveness_timeout_s: " + std::to_string(kLiveness) + "\n";
}

class LinkCut : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    h_ = test::netns_hosts();
    if (!h_.skip.empty()) return;
    dir_ = test::make_temp_dir("cut");
    TinyModelOptions o;
    o.layers = 6;
    o.hidden = 64;
    o.heads = 4;
    o.vocab = 300;
    o.seed = 11;
    model_ = dir_ + "/model";
    make_tiny_model(model_, o);
    config_ = test::hosts_deployment(h_, dir_ + "/three.yaml", {0, 1, 2}, cut_mpi_keys());
  }
  void SetUp() override {
    if (!h_.skip.empty()) GTEST_SKIP() << "no hosts: " << h_.skip;
    ASSERT_GE(h_.hosts.size(), 3u);
  }
  void TearDown() override {
    if (h_.skip.empty()) std::system(("bash " + h_.script + " heal " + h_.tag + " 1").c_str());
  }
  // Starts `args` on host 0 in the background: output to `log`, exit status to `rc`.
  // slow_ms > 0: every micro-batch takes that much longer (GLMPIPE_SLOW_STEP_MS), so that the job
  // is still running when the link is cut on a fast, quiet machine too.
  void start_on_host0(const std::string& args, const std::string& log, const std::string& rc, const std::string& pids,
                      int slow_ms = 0) {
    std::system(("rm -rf " + pids + " " + rc + " && mkdir -p " + pids).c_str());
    const std::string slow = slow_ms > 0 ? "GLMPIPE_SLOW_STEP_MS=" + std::to_string(slow_ms) + " " : "";
    const std::string cmd = "( " + test::on_host(h_.hosts[0], slow + "GLMPIPE_PID_DIR=" + pids + " timeout 300 " +
                                                                  test::glmpipe_bin() + " " + args) +
                            " > " + log + " 2>&1; echo $? > " + rc + " ) &";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  static bool wait_for(const std::function<bool()>& done, double seconds) {
    const auto t0 = Clock::now();
    while (!done()) {
      if (std::chrono::duration<double>(Clock::now() - t0).count() > seconds) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return true;
  }
  void cut(int host) {
    ASSERT_EQ(std::system(("bash " + h_.script + " cut " + h_.tag + " " + std::to_string(host)).c_str()), 0);
  }
  static inline test::NetnsHosts h_;
  static inline std::string dir_, model_, config_;

  // Every rank process named in `pids` (rank*.pid) has ended, on whichever host it ran.
  static std::string live_ranks(const std::string& pids, int n) {
    std::string out;
    for (int r = 0; r < n; ++r) {
      int pid = 0;
      std::ifstream(pids + "/rank" + std::to_string(r) + ".pid") >> pid;
      const std::string stat = pid > 0 ? test::read_file("/proc/" + std::to_string(pid) + "/stat") : "";
      const size_t rp = stat.rfind(')');
      if (rp != std::string::npos && rp + 2 < stat.size() && stat[rp + 2] != 'Z') out += " rank" + std::to_string(r);
    }
    return out;
  }
  // The processes still running in the hosts' namespaces: " g1-h1: 1234 (orted)" ("" when none).
  static std::string leftovers() {
    std::string out;
    for (const auto& host : h_.hosts) {
      std::istringstream pids(test::run_command("ip netns pids " + host).out);
      for (std::string pid; pids >> pid;) {
        std::string comm = test::read_file("/proc/" + pid + "/comm");
        if (comm.empty()) continue;  // ended since
        out += " " + host + ": " + pid + " (" + comm.substr(0, comm.find('\n')) + ")";
      }
    }
    return out;
  }
  // The background command's exit status (-1: not written yet; the shell creates the file first).
  static int exit_status(const std::string& rc) {
    if (test::read_file(rc).find_first_of("0123456789") == std::string::npos) return -1;
    int code = -1;
    std::ifstream(rc) >> code;
    return code;
  }
  // Clean-up only (a failed check has been recorded): ends what is left in the hosts' namespaces.
  static void end_leftovers(const std::string& rc) {
    for (const auto& host : h_.hosts) std::system(("ip netns pids " + host + " | xargs -r kill -9").c_str());
    wait_for([&] { return exit_status(rc) >= 0; }, 30);
  }
  // Cuts host 1 once `ready` holds; checks that every process of the job, on every host, has ended
  // within the bound + 10 s, glmpipe with a non-zero status, the cause named; returns the log.
  std::string cut_and_wait(const std::string& log, const std::string& rc, const std::string& pids,
                           const std::function<bool()>& ready) {
    EXPECT_TRUE(wait_for([&] { return test::file_exists(pids + "/rank2.pid") && ready(); }, 180)) << test::read_file(log);
    EXPECT_EQ(exit_status(rc), -1) << "the job ended before the cut; make it longer\n" << test::read_file(log);
    // The check below can see the job: its daemon and rank run on host 1 (and mpirun on host 0).
    EXPECT_NE(leftovers().find(" " + h_.hosts[1] + ": "), std::string::npos) << "no process seen on host 1";
    cut(1);
    const auto t0 = Clock::now();
    const double bound = kLiveness + 10;
    auto seconds = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
    double ranks_s = -1, glmpipe_s = -1;
    const bool ended = wait_for(
        [&] {
          if (ranks_s < 0 && live_ranks(pids, 3).empty()) ranks_s = seconds();
          if (glmpipe_s < 0 && exit_status(rc) >= 0) glmpipe_s = seconds();
          return ranks_s >= 0 && glmpipe_s >= 0 && leftovers().empty();
        },
        bound + 20);
    const double all_s = seconds();
    const std::string text = test::read_file(log);
    EXPECT_TRUE(ended) << "still running " << all_s << " s after the cut:" << live_ranks(pids, 3) << leftovers()
                       << (glmpipe_s < 0 ? " (glmpipe has not exited)" : "") << "\n" << text;
    EXPECT_LT(all_s, bound) << "the last process ended " << all_s << " s after the cut\n" << text;
    EXPECT_NE(exit_status(rc), 0) << text;
    std::cout << "[ measure  ] after the cut: ranks gone in " << ranks_s << " s, glmpipe exited (status "
              << exit_status(rc) << ") in " << glmpipe_s << " s, every process on every host gone in " << all_s
              << " s (bound " << bound << " s)" << std::endl;
    // The cause: rank 1 on host 1 is silent (seen by its neighbours over the cut link), in the
    // rank's message and in glmpipe's own last line.
    const std::string who = "rank 1 (stage 1, host " + h_.hosts[1] + ")";
    EXPECT_NE(text.find(who + " silent for"), std::string::npos) << text;
    EXPECT_NE(text.find("liveness: " + who + " went silent"), std::string::npos) << text;
    if (!ended) end_leftovers(rc);
    return text;
  }
};

TEST_F(LinkCut, MidGenerationEndsEveryRankOnEveryHostNamingRankAndHost) {
  const std::string log = dir_ + "/gen.log", rc = dir_ + "/gen.rc", pids = dir_ + "/gen_pids";
  start_on_host0("generate --config " + config_ + " --model " + model_ +
                     " --max-seq 512 --ids 11,42,7,296,297 --max-new-tokens 500 --temperature 1.5 --top-k 0 --top-p 1"
                     " --print-ids",
                 log, rc, pids, /*slow_ms=*/20);
  auto t_ready = std::make_shared<Clock::time_point>(Clock::time_point::max());
  cut_and_wait(log, rc, pids, [&] {  // 1.5 s after every rank started: mid-generation
    if (*t_ready == Clock::time_point::max()) *t_ready = Clock::now();
    return Clock::now() - *t_ready > std::chrono::milliseconds(1500);
  });
}

TEST_F(LinkCut, BatchResumedAfterTheCutCompletesExactlyTheMissingIds) {
  std::string in;
  for (int i = 0; i < 40; ++i) {
    std::vector<int64_t> ids;
    for (int k = 0; k < 3 + i % 7; ++k) ids.push_back(5 + (i * 37 + k * 11) % 280);
    ids.push_back(296);
    ids.push_back(297);
    in += json{{"id", "c" + std::to_string(i)}, {"ids", ids}, {"max_new_tokens", 60}, {"greedy", true}}.dump() + "\n";
  }
  const std::string input = dir_ + "/in.jsonl", ref = dir_ + "/ref.jsonl", out = dir_ + "/out.jsonl";
  std::ofstream(input) << in;
  auto r0 = test::run_command("timeout 300 " + test::glmpipe_bin() + " batch --model " + model_ +
                              " --threads 1 --max-batch 2 --input " + input + " --output " + ref);
  ASSERT_EQ(r0.exit_code, 0) << r0.err;
  auto ids_of = [](const std::string& path, int* dups) {
    std::map<std::string, json> m;
    std::istringstream lines(test::read_file(path));
    for (std::string line; std::getline(lines, line);) {
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.contains("id")) continue;  // a line cut short by the kill
      if (m.count(j["id"].get<std::string>())) ++*dups;
      m[j["id"].get<std::string>()] = j["ids"];
    }
    return m;
  };
  int dups = 0;
  const auto want = ids_of(ref, &dups);
  ASSERT_EQ(want.size(), 40u);
  const std::string args = "batch --config " + config_ + " --model " + model_ + " --max-batch 2 --input " + input +
                           " --output " + out;
  const std::string log = dir_ + "/b1.log", rc = dir_ + "/b1.rc", pids = dir_ + "/b1_pids";
  start_on_host0(args, log, rc, pids, /*slow_ms=*/20);
  cut_and_wait(log, rc, pids, [&] {
    const std::string s = test::read_file(out);
    return std::count(s.begin(), s.end(), '\n') >= 3;
  });
  const auto partial = ids_of(out, &dups);
  ASSERT_LT(partial.size(), 40u) << "the job finished before the cut";
  ASSERT_EQ(std::system(("bash " + h_.script + " heal " + h_.tag + " 1").c_str()), 0);
  const std::string log2 = dir_ + "/b2.log", rc2 = dir_ + "/b2.rc", pids2 = dir_ + "/b2_pids";
  start_on_host0(args, log2, rc2, pids2);
  ASSERT_TRUE(wait_for([&] { return exit_status(rc2) >= 0; }, 300)) << test::read_file(log2);
  const int code = exit_status(rc2);
  const std::string text = test::read_file(log2);
  ASSERT_EQ(code, 0) << text;
  EXPECT_NE(text.find(std::to_string(partial.size()) + " already in"), std::string::npos) << text;
  EXPECT_NE(text.find("batch: " + std::to_string(40 - partial.size()) + " requests"), std::string::npos)
      << "the resumed job did not run exactly the missing ids:\n" << text;
  dups = 0;
  EXPECT_EQ(ids_of(out, &dups), want);
  EXPECT_EQ(dups, 0) << "an id was written twice";
}

}  // namespace
