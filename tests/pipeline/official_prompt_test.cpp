// ChatGLM-6B text prompts are validated as the official code does (issue 18 item 6): its
// modeling_chatglm.py raises when a prompt has neither [MASK] nor [gMASK], or no <sop>. Here the
// tiny chat model's config.json names special ids its tokenizer never writes (a tokenizer that
// does not belong to the model): generate --prompt, chat and batch text lines fail with one clear
// error naming the ids, while --ids and batch "ids" lines stay raw token ids and run.
// (serve: tests/unit/openai_tools_test.cpp, OfficialPrompt.)
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/test_util.h"

using json = nlohmann::json;

namespace glmpipe {
namespace {

test::RunResult glmpipe(const std::string& args, const std::string& stdin_text = "") {
  const std::string feed = stdin_text.empty() ? "" : "printf '" + stdin_text + "' | ";
  return test::run_command(feed + "timeout 120 " + test::glmpipe_bin() + " " + args);
}

class OfficialPrompt : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("official_prompt");
    model_ = test::make_tiny_chat_model(dir_ + "/model");
    cfg_ = json::parse(test::read_file(model_ + "/config.json"));
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  void write_config(const json& c) { std::ofstream(model_ + "/config.json") << c.dump(2); }
  std::string flags() const { return " --model " + model_ + " --threads 1 --max-new-tokens 2 --greedy"; }
  std::string dir_, model_;
  json cfg_;
};

TEST_F(OfficialPrompt, TextPromptsNeedTheConfigsMaskAndSopIdsStayRaw) {
  ASSERT_EQ(glmpipe("generate --prompt hello" + flags()).exit_code, 0);  // the model's own config: fine
  const int64_t v = cfg_["vocab_size"];
  json c = cfg_;
  c["gmask_token_id"] = v - 1;  // ids of the embedding's padding rows: never written by the tokenizer
  c["mask_token_id"] = v - 2;
  write_config(c);
  auto g = glmpipe("generate --prompt hello" + flags());
  EXPECT_EQ(g.exit_code, 1) << g.err;
  EXPECT_NE(g.err.find("--prompt: the prompt has neither [MASK] (id " + std::to_string(v - 2) + ") nor [gMASK] (id " +
                       std::to_string(v - 1) + ")"),
            std::string::npos)
      << g.err;
  EXPECT_EQ(g.out, "");
  auto ids = glmpipe("generate --ids 5,6,7 --print-ids" + flags());
  EXPECT_EQ(ids.exit_code, 0) << ids.err;
  auto chat = glmpipe("chat" + flags(), "hello\\n/exit\\n");
  EXPECT_EQ(chat.exit_code, 1) << chat.err;
  EXPECT_NE(chat.err.find("chat: the prompt has neither [MASK]"), std::string::npos) << chat.err;
  // batch: the text line is a line error, the ids line runs.
  const std::string in = dir_ + "/in.jsonl", out = dir_ + "/out.jsonl";
  std::ofstream(in) << R"({"id": "text", "prompt": "hello", "max_new_tokens": 2})" << "\n"
                    << R"({"id": "raw", "ids": [5, 6, 7], "max_new_tokens": 2})" << "\n";
  auto b = glmpipe("batch --input " + in + " --output " + out + " --model " + model_ + " --threads 1");
  const std::string written = test::read_file(out), errors = test::read_file(dir_ + "/out.errors.jsonl");
  EXPECT_NE(written.find("\"raw\""), std::string::npos) << written << b.err;
  EXPECT_EQ(written.find("\"id\":\"text\""), std::string::npos) << written;
  EXPECT_NE(errors.find("\"text\""), std::string::npos) << errors << b.err;
  EXPECT_NE(errors.find("neither [MASK]"), std::string::npos) << errors;
  // No <sop> of config.json in the prompt.
  c = cfg_;
  c["bos_token_id"] = v - 3;
  write_config(c);
  g = glmpipe("generate --prompt hello" + flags());
  EXPECT_EQ(g.exit_code, 1) << g.err;
  EXPECT_NE(g.err.find("no <sop> (bos_token_id " + std::to_string(v - 3) + " of config.json)"), std::string::npos) << g.err;
}

}  // namespace
}  // namespace glmpipe
