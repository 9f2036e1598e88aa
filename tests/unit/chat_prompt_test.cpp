// Chat prompt format (spec §2.5, vectors §5.2) and response post-processing.
#include "model/chat_prompt.h"

#include <gtest/gtest.h>

#include "common/error.h"

namespace glmpipe {
namespace {

const char* kQ0 = "你好";
const char* kR0 = "你好👋！我是人工智能助手 ChatGLM-6B，很高兴见到你，欢迎问我任何问题。";
const char* kQ1 = "晚上睡不着应该怎么办";
// The 3-message prompt of chatglm.cpp's TEST(Pipeline, ChatGLM) (spec §5.2, vector 2).
const char* kTwoRoundPrompt =
    "[Round 0]\n问：你好\n答：你好👋！我是人工智能助手 ChatGLM-6B，很高兴见到你，欢迎问我任何问题。\n"
    "[Round 1]\n问：晚上睡不着应该怎么办\n答：";

TEST(ChatPrompt, EmptyHistoryIsQueryItself) {
  EXPECT_EQ(build_chat_prompt({}, "你好"), "你好");
  EXPECT_EQ(build_chat_prompt({}, ""), "");
}

TEST(ChatPrompt, MatchesReferenceTwoRounds) {
  EXPECT_EQ(build_chat_prompt({{kQ0, kR0}}, kQ1), kTwoRoundPrompt);
}

TEST(ChatPrompt, RoundNumbersCount) {
  ChatHistory h = {{"a", "b"}, {"c", "d"}};
  EXPECT_EQ(build_chat_prompt(h, "e"),
            "[Round 0]\n问：a\n答：b\n[Round 1]\n问：c\n答：d\n[Round 2]\n问：e\n答：");
}

TEST(ChatPrompt, FromMessagesSingleUser) {
  EXPECT_EQ(build_prompt_from_messages({{"user", "你好"}}), "你好");
}

TEST(ChatPrompt, FromMessagesThreeMessages) {
  EXPECT_EQ(build_prompt_from_messages({{"user", kQ0}, {"assistant", kR0}, {"user", kQ1}}),
            kTwoRoundPrompt);
}

TEST(ChatPrompt, SystemIsPrependedToFirstQuery) {
  EXPECT_EQ(build_prompt_from_messages({{"system", "Be brief."}, {"user", "hi"}}), "Be brief.\nhi");
  ChatTurn t = messages_to_turn({{"system", "S"}, {"user", "u0"}, {"assistant", "a0"}, {"user", "u1"}});
  ASSERT_EQ(t.history.size(), 1u);
  EXPECT_EQ(t.history[0].first, "S\nu0");
  EXPECT_EQ(t.history[0].second, "a0");
  EXPECT_EQ(t.query, "u1");
}

TEST(ChatPrompt, MalformedMessagesThrow) {
  EXPECT_THROW(build_prompt_from_messages({}), Error);
  EXPECT_THROW(build_prompt_from_messages({{"system", "s"}}), Error);
  EXPECT_THROW(build_prompt_from_messages({{"assistant", "a"}, {"user", "u"}}), Error);
  EXPECT_THROW(build_prompt_from_messages({{"user", "u"}, {"assistant", "a"}}), Error);
  EXPECT_THROW(build_prompt_from_messages({{"user", "u"}, {"user", "v"}}), Error);
  EXPECT_THROW(build_prompt_from_messages({{"user", "u"}, {"system", "s"}, {"user", "v"}}), Error);
  EXPECT_THROW(build_prompt_from_messages({{"tool", "t"}}), Error);
  try {
    build_prompt_from_messages({{"bot", "x"}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bot"), std::string::npos) << e.what();
  }
}

TEST(PostprocessResponse, RestoresReferenceResponse) {
  // What decode gives for the reference response (NFKC folded the punctuation).
  EXPECT_EQ(postprocess_response("你好👋!我是人工智能助手 ChatGLM-6B,很高兴见到你,欢迎问我任何问题。"), kR0);
}

TEST(PostprocessResponse, StripAndTrainingTime) {
  EXPECT_EQ(postprocess_response("  \n\t hello \n "), "hello");
  EXPECT_EQ(postprocess_response("\xE3\x80\x80全角空格\xE3\x80\x80"), "全角空格");  // U+3000 stripped
  EXPECT_EQ(postprocess_response("我的训练数据截止到[[训练时间]]。"), "我的训练数据截止到2023年。");
  EXPECT_EQ(postprocess_response("[[训练时间]][[训练时间]]"), "2023年2023年");
}

TEST(PostprocessResponse, PunctuationNextToCjk) {
  EXPECT_EQ(postprocess_response("你好,世界"), "你好，世界");
  EXPECT_EQ(postprocess_response("好!"), "好！");
  EXPECT_EQ(postprocess_response("!好"), "！好");
  EXPECT_EQ(postprocess_response("时间:10点"), "时间：10点");
  EXPECT_EQ(postprocess_response("a;b;中;d"), "a;b；中；d");
  EXPECT_EQ(postprocess_response("真的?"), "真的？");
  // No CJK neighbour: untouched (ASCII text, digits, emoji, full-width already).
  EXPECT_EQ(postprocess_response("Hello, world! a:b; c?"), "Hello, world! a:b; c?");
  EXPECT_EQ(postprocess_response("👋!"), "👋!");
  EXPECT_EQ(postprocess_response("3,4"), "3,4");
  // Only the mark adjacent to CJK changes; a run ",," keeps the far one.
  EXPECT_EQ(postprocess_response("中,,a"), "中，,a");
  EXPECT_EQ(postprocess_response("a,,中"), "a,，中");
  // Range edges: U+4E00 一 and U+9FFF are CJK, U+3400 (extension A) is not.
  EXPECT_EQ(postprocess_response("一,"), "一，");
  EXPECT_EQ(postprocess_response("\xE9\xBF\xBF,"), "\xE9\xBF\xBF，");
  EXPECT_EQ(postprocess_response("\xE3\x90\x80,"), "\xE3\x90\x80,");
}

TEST(PostprocessResponse, InvalidUtf8PassesThrough) {
  EXPECT_EQ(postprocess_response("a\xFF,b"), "a\xFF,b");
  EXPECT_EQ(postprocess_response("中\xE4"), "中\xE4");
}

}  // namespace
}  // namespace glmpipe
