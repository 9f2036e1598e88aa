// Crafted config.json files through the CLI (issue 15): trailing garbage after the object, a FIFO in
// place of the file, and integers that would wrap, truncate or overflow the model's arithmetic. Each
// must end `glmpipe inspect` and `forward` with exit 1 and one error line naming the file and the key,
// never a signal, never a hang, never an output file.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "checkpoint/tiny_model.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

using ojson = nlohmann::ordered_json;

class HostileConfigJson : public testing::Test {
 protected:
  void SetUp() override { dir_ = test::make_temp_dir("hostile_config"); }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  // A tiny model of `family` whose config.json is then replaced by `edit(text of the official one)`.
  void make(TinyFamily family, const std::function<std::string(const std::string&)>& edit) {
    std::system(("rm -rf '" + dir_ + "'/*").c_str());
    TinyModelOptions o;
    o.family = family;
    make_tiny_model(dir_, o);
    const std::string path = dir_ + "/config.json";
    const std::string text = test::read_file(path);
    ASSERT_FALSE(text.empty());
    std::ofstream(path, std::ios::trunc) << edit(text);
  }
  // `key` set to the raw JSON text `value` (kept verbatim: 4294967300 must not become a double).
  static std::function<std::string(const std::string&)> set_raw(const std::string& key, const std::string& value) {
    return [key, value](const std::string& text) {
      ojson j = ojson::parse(text);
      j[key] = "@@VALUE@@";
      std::string s = j.dump(2);
      s.replace(s.find("\"@@VALUE@@\""), 11, value);
      return s;
    };
  }

  // inspect and forward each exit 1 within 30 s with one error line holding every `parts`.
  void expect_refused(const std::vector<std::string>& parts) {
    const std::string bin = test::glmpipe_bin(), out = dir_ + "/out.npy";
    for (const std::string& cmd : {bin + " inspect '" + dir_ + "'",
                                   bin + " forward --model '" + dir_ + "' --ids 1,2,3 --out '" + out + "'"}) {
      const auto t0 = std::chrono::steady_clock::now();
      test::RunResult r = test::run_command("timeout -s KILL 60 " + cmd);
      const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      EXPECT_EQ(r.exit_code, 1) << cmd << "\nstderr: " << r.err;  // 137 would be the timeout's KILL
      EXPECT_LT(took, 30.0) << cmd;
      for (const auto& p : parts) EXPECT_NE(r.err.find(p), std::string::npos) << cmd << " lacks " << p << ": " << r.err;
      size_t error_lines = 0;
      for (size_t pos = 0; (pos = r.err.find("[error]", pos)) != std::string::npos; ++pos) ++error_lines;
      EXPECT_EQ(error_lines, 1u) << cmd << ": " << r.err;
      EXPECT_EQ(r.err.find("frame #"), std::string::npos) << "a backtrace: " << r.err;
      EXPECT_FALSE(test::file_exists(out)) << cmd;
      EXPECT_EQ(r.out, "") << cmd;
    }
  }
  std::string file() const { return dir_ + "/config.json"; }
  std::string dir_;
};

TEST_F(HostileConfigJson, TrailingGarbageIsRefused) {
  make(TinyFamily::kChatGLM, [](const std::string& t) { return t + "\n{\"num_layers\": 99}\n"; });
  expect_refused({file(), "invalid JSON"});
  make(TinyFamily::kChatGLM2, [](const std::string& t) { return t + " garbage"; });
  expect_refused({file(), "invalid JSON"});
}

TEST_F(HostileConfigJson, FifoDoesNotBlock) {
  make(TinyFamily::kChatGLM, [](const std::string& t) { return t; });
  std::remove(file().c_str());
  ASSERT_EQ(::mkfifo(file().c_str(), 0644), 0);
  expect_refused({file(), "not a regular file"});
}

// quantization_bit 4294967300 = 2^32 + 4 read into an int became 4 (an int4 model); 2^64 - 1 read
// into an int64 became -1; 64.5 became 64.
TEST_F(HostileConfigJson, IntegersThatWouldWrapOrTruncateAreRefused) {
  make(TinyFamily::kChatGLM, set_raw("quantization_bit", "4294967300"));
  expect_refused({file(), "\"quantization_bit\"", "4294967300", "not an integer"});
  make(TinyFamily::kChatGLM, set_raw("hidden_size", "18446744073709551615"));
  expect_refused({file(), "\"hidden_size\"", "18446744073709551615", "not an integer"});
  make(TinyFamily::kChatGLM2, set_raw("num_layers", "2.5"));
  expect_refused({file(), "\"num_layers\"", "2.5", "not an integer"});
  make(TinyFamily::kChatGLM2, set_raw("seq_length", "1e30"));
  expect_refused({file(), "\"seq_length\"", "not an integer"});
}

// In range for int64, but products (hidden x inner, vocab x hidden, layers x ...) would overflow.
TEST_F(HostileConfigJson, HugeSizesAreRefusedByName) {
  make(TinyFamily::kChatGLM, set_raw("inner_hidden_size", "4611686018427387904"));  // 2^62
  expect_refused({file(), "\"inner_hidden_size\"", "exceeds the limit"});
  make(TinyFamily::kChatGLM, set_raw("max_sequence_length", "9223372036854775807"));
  expect_refused({file(), "\"max_sequence_length\"", "exceeds the limit"});
  make(TinyFamily::kChatGLM2, set_raw("padded_vocab_size", "1099511627776"));  // 2^40
  expect_refused({file(), "\"padded_vocab_size\"", "exceeds the limit"});
  make(TinyFamily::kChatGLM2, set_raw("num_layers", "1000000"));
  expect_refused({file(), "\"num_layers\"", "1000000", "exceeds the limit"});
}

}  // namespace
}  // namespace glmpipe
