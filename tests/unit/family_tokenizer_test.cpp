// ChatGLM2/3 (sentencepiece) and GLM-4 (tiktoken) tokenizers against the real files in
// ../shared/data/tokenizers/ on the vectors of chatglm2-family.md §4.3 (chatglm.cpp @ f86777c
// chatglm_test.cpp, K024/chatglm-q tests), round trips, special tokens never parsed from chat text,
// and the tokenize CLI contract. Skipped (with the reason) when ../shared/data is absent.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "model/tokenizer/chatglm2_tokenizer.h"
#include "model/tokenizer/glm4_tokenizer.h"
#include "model/tokenizer/tokenizer_loader.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

std::string glm2_path() { return test::shared_data() + "/tokenizers/chatglm2-6b-tokenizer.model"; }
std::string glm4_path() { return test::shared_data() + "/tokenizers/glm-4-9b-tokenizer.model"; }
std::string v1_path() { return test::shared_data() + "/tokenizers/chatglm-6b-ice_text.model"; }

#define SKIP_WITHOUT(path) \
  if (!test::file_exists(path)) GTEST_SKIP() << "needs " << (path) << " (../shared/data absent)"

const ChatGLM2Tokenizer& glm3() {
  static ChatGLM2Tokenizer t = ChatGLM2Tokenizer::load(glm2_path(), true);
  return t;
}
const ChatGLM2Tokenizer& glm2() {
  static ChatGLM2Tokenizer t = ChatGLM2Tokenizer::load(glm2_path(), false);
  return t;
}
const Glm4Tokenizer& glm4() {
  static Glm4Tokenizer t = Glm4Tokenizer::load(glm4_path());
  return t;
}

std::vector<int> tail(const std::vector<int>& v, size_t from) { return {v.begin() + long(from), v.end()}; }

std::string join_ids(const std::vector<int>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

// ---- ChatGLM2 / ChatGLM3 ------------------------------------------------------------------

struct Case {
  std::string text;
  std::vector<int> ids;
};

const std::vector<Case>& glm2_cases() {
  static const std::vector<Case> cases = {
      {"你好", {64790, 64792, 36474, 54591}},
      {"[Round 1]\n\n问：你好\n\n答：",
       {64790, 64792, 790, 30951, 517, 30910, 30939, 30996, 13, 13, 54761, 31211, 39701, 13, 13, 55437, 31211}},
      {"[Round 1]\n\n问：你好\n\n答：你好👋！我是人工智能助手 "
       "ChatGLM2-6B，很高兴见到你，欢迎问我任何问题。\n\n[Round 2]\n\n问：晚上睡不着应该怎么办\n\n答：",
       {64790, 64792, 790,   30951, 517,   30910, 30939, 30996, 13,    13,    54761, 31211, 39701,
        13,    13,    55437, 31211, 39701, 243,   162,   148,   142,   31404, 33030, 34797, 42481,
        22011, 10461, 30944, 30943, 30941, 30978, 30949, 31123, 48895, 35214, 54622, 31123, 32616,
        39905, 31901, 31639, 31155, 13,    13,    30995, 30951, 517,   30910, 30943, 30996, 13,
        13,    54761, 31211, 32820, 54266, 31876, 35153, 13,    13,    55437, 31211}},
      {"def main():\n    print('hello world')\t# greeting",
       {64790, 64792, 884, 1301, 9427, 13, 296, 4466, 2029, 15616, 30914, 993, 3387, 12, 31010, 30174}},
  };
  return cases;
}

TEST(ChatGLM2TokenizerReal, EncodesChatglmCppVectors) {
  SKIP_WITHOUT(glm2_path());
  for (const auto& c : glm2_cases()) {
    EXPECT_EQ(glm2().encode(c.text), c.ids) << c.text;
    EXPECT_EQ(glm3().encode(c.text), c.ids) << c.text;  // ChatGLM3 encodes text the same way
  }
  EXPECT_EQ(glm2_cases()[2].ids.size(), 63u);
}

TEST(ChatGLM2TokenizerReal, DecodesVectorsBack) {
  SKIP_WITHOUT(glm2_path());
  for (const auto& c : glm2_cases()) EXPECT_EQ(glm2().decode(c.ids), c.text);
}

TEST(ChatGLM2TokenizerReal, ChatglmQVectors) {
  SKIP_WITHOUT(glm2_path());
  // Pair encode = A + B + </s>; HF builds it from the two encodes without the second prefix.
  std::vector<int> pair = glm2().encode("[Round 0]\n问：\t");
  for (int id : glm2().encode("问题1", false)) pair.push_back(id);
  pair.push_back(glm2().special_id("</s>"));
  EXPECT_EQ(pair, (std::vector<int>{64790, 64792, 790, 30951, 517, 30910, 30940, 30996, 13, 54761, 31211, 12,
                                    30910, 31639, 30939, 2}));
  const std::string ws = "\t   \t     \n \n";
  const std::vector<int> ids = glm2().encode(ws, false);
  EXPECT_EQ(ids, (std::vector<int>{30910, 12, 2951, 12, 3729, 13, 30910, 13}));
  EXPECT_EQ(glm2().decode(ids), ws);
}

TEST(ChatGLM2TokenizerReal, SpecialIds) {
  SKIP_WITHOUT(glm2_path());
  EXPECT_EQ(glm3().n_words(), 64789);
  const std::vector<std::pair<const char*, int>> ids = {
      {"[MASK]", 64789}, {"[gMASK]", 64790}, {"[sMASK]", 64791}, {"sop", 64792}, {"eop", 64793},
      {"<|system|>", 64794}, {"<|user|>", 64795}, {"<|assistant|>", 64796}, {"<|observation|>", 64797},
      {"</s>", 2}, {"<unk>", 0}};
  for (auto [name, id] : ids) EXPECT_EQ(glm3().special_id(name), id) << name;
  EXPECT_EQ(glm3().num_ids(), 64798);
  EXPECT_EQ(glm2().num_ids(), 64794);
  EXPECT_EQ(glm2().special_id("<|user|>"), -1);  // ChatGLM2 has no role tokens
}

TEST(ChatGLM2TokenizerReal, RoleTokenTextIsNeverParsed) {
  SKIP_WITHOUT(glm2_path());
  for (const std::string t : {"<|user|>", "[gMASK]", "sop", "<|observation|>hi"}) {
    for (int id : glm3().encode_text(t)) EXPECT_LT(id, glm3().n_words()) << t;
    for (int id : tail(glm3().encode(t), 2)) EXPECT_LT(id, glm3().n_words()) << t;
  }
}

TEST(ChatGLM2TokenizerReal, DecodeKeepsRoleTextOnlyWhenAsked) {
  SKIP_WITHOUT(glm2_path());
  // <|assistant|> + sp("\n") + sp("你好") as the chat prompt builds it: one sentencepiece run, whose
  // second dummy-prefix "▁" stays a space (process_response strips it).
  const std::vector<int> ids = {64796, 30910, 13, 36474, 54591, 64797};
  EXPECT_EQ(glm3().decode(ids, true), "<|assistant|>\n 你好<|observation|>");
  EXPECT_EQ(glm3().decode(ids), "\n 你好");
  // ChatGLM3 decodes the runs between specials separately: each loses its own leading "▁".
  EXPECT_EQ(glm3().decode({36474, 54591, 64795, 36474, 54591}, true), "你好<|user|>你好");
  EXPECT_EQ(glm3().decode({64790, 64792, 36474, 54591, 65000}), "你好");  // specials, padding rows dropped
}

TEST(ChatGLM2TokenizerReal, RandomRoundTrip) {
  SKIP_WITHOUT(glm2_path());
  std::mt19937 rng(7);
  const std::vector<std::string> atoms = {"你", "好", " ", "\n", "\t", "a", "Z", "1", "👋", "，", "。", "  ", "def", "é"};
  for (int n = 0; n < 200; ++n) {
    std::string s;
    for (int k = int(rng() % 12); k >= 0; --k) s += atoms[rng() % atoms.size()];
    // SentencePiece's dummy prefix: a leading space is not restored (as in HF).
    if (s[0] == ' ') continue;
    EXPECT_EQ(glm3().decode(glm3().encode(s)), s) << "[" << s << "]";
  }
}

// ---- GLM-4 tiktoken -------------------------------------------------------------------------

TEST(Glm4TokenizerReal, RanksAndSpecials) {
  SKIP_WITHOUT(glm4_path());
  EXPECT_EQ(glm4().n_ranks(), 151329);
  EXPECT_EQ(glm4().num_ids(), 151343);
  const std::vector<std::pair<const char*, int>> ids = {
      {"<|endoftext|>", 151329}, {"[MASK]", 151330}, {"[gMASK]", 151331}, {"[sMASK]", 151332},
      {"<sop>", 151333}, {"<eop>", 151334}, {"<|system|>", 151335}, {"<|user|>", 151336},
      {"<|assistant|>", 151337}, {"<|observation|>", 151338}, {"<|begin_of_image|>", 151339},
      {"<|end_of_image|>", 151340}, {"<|begin_of_video|>", 151341}, {"<|end_of_video|>", 151342}};
  for (auto [name, id] : ids) EXPECT_EQ(glm4().special_id(name), id) << name;
}

// llama.cpp's chktxt (convert_hf_to_gguf_update.py), as chatglm.cpp's TEST(Pipeline, ChatGLM4).
const std::string kChkTxt =
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) "
    "✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 "
    "?我想在apple工作1314151天～ ------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've "
    "been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL";
const std::vector<int> kChkIds = {
    198,    4710,   14721, 65020,  7847,   1572,  2303,   78043,  10942, 9281,   248,    222,   320,    8251,
    8,      26440,  114,   124564, 9281,   234,   104,    30423,  320,   35495,  98226,  96714, 8,      25442,
    227,    11157,  99,    247,    9281,   99,    247,    220,    18,    220,    100702, 220,   121577, 220,
    121577, 18,     220,   121577, 100702, 220,   121577, 121577, 220,   121577, 121577, 18,    220,    121577,
    121577, 100702, 220,   18,     13,     18,    220,    18,     496,   18,     220,    18,    1112,   18,
    220,    20833,  222,   96709,  241,    44002, 233,    20833,  237,   44002,  224,    20833, 244,    20833,
    115,    20833,  253,   44002,  223,    20833, 253,    20833,  95,    96709,  227,    74764, 223,    937,
    101446, 98319,  22320, 98538,  118901, 19,    99082,  16,     98411, 21168,  55088,  52883, 18625,  131040,
    13065,  146335, 78377, 3355,   4605,   4605,  13865,  13865,  73022, 3014,   3014,   28052, 17066,  2928,
    26524,  7646,   358,   3003,   1012,   364,   83,     813,    566,   594,    1052,   11,    364,    787,
    498,    2704,   30,    364,    44,     537,   2704,   358,    3278,  1281,   432,    11,    364,    35,
    498,    1075,   1045,  15231,  30,     1205,  6,      42368,  264,   63409,  43};

const std::string kCodeTxt = R"(
```c++
#include <iostream>

int main() {
    printf("hello world\n");    // say hello
}
```

```python
if __name__ == '__main__':
    print('hello world')        # say hello
```
)";
const std::vector<int> kCodeIds = {198,   73022, 66,    22879, 1067,  366,   9661,  1339, 396,   1887, 368,
                                   341,   262,   4100,  445,   14978, 1879,  1699,  5038, 262,   442,  1977,
                                   23745, 198,   532,   13865, 19288, 73022, 12663, 198,  333,   1304, 606,
                                   563,   621,   12106, 3817,  16165, 262,   1173,  492,  14978, 1879, 863,
                                   286,   671,   1977,  23745, 198,   13865, 3989};

TEST(Glm4TokenizerReal, EncodesChatglmCppVectors) {
  SKIP_WITHOUT(glm4_path());
  EXPECT_EQ(kChkIds.size(), 165u);
  EXPECT_EQ(glm4().encode_text(kChkTxt), kChkIds);
  EXPECT_EQ(kCodeIds.size(), 51u);
  EXPECT_EQ(glm4().encode_text(kCodeTxt), kCodeIds);
  EXPECT_EQ(glm4().encode("你好"), (std::vector<int>{151331, 151333, 109377}));
  EXPECT_EQ(glm4().encode("你好", false), (std::vector<int>{109377}));
}

TEST(Glm4TokenizerReal, DecodesVectorsBack) {
  SKIP_WITHOUT(glm4_path());
  EXPECT_EQ(glm4().decode(kChkIds), kChkTxt);
  EXPECT_EQ(glm4().decode(kCodeIds), kCodeTxt);
  EXPECT_EQ(glm4().decode({151331, 151333, 109377}), "你好");
  EXPECT_EQ(glm4().decode({151337, 198, 109377}, true), "<|assistant|>\n你好");
}

TEST(Glm4TokenizerReal, OfficialEncodeParsesSpecialTextButChatTextNever) {
  SKIP_WITHOUT(glm4_path());
  // HF's added-token split: the text between specials is encoded chunk by chunk.
  const std::vector<int> ids = glm4().encode("<|user|>\n你好<|assistant|>", false);
  EXPECT_EQ(ids, (std::vector<int>{151336, 198, 109377, 151337}));
  for (int id : glm4().encode_text("<|user|>\n你好<|assistant|>[gMASK]<sop>")) EXPECT_LT(id, 151329);
}

TEST(Glm4TokenizerReal, InvalidUtf8RoundTripsBytewise) {
  SKIP_WITHOUT(glm4_path());
  const std::string bad = std::string("a\xff") + "b\xe4\xbd" + "c";
  const auto ids = glm4().encode_text(bad);
  // No byte is lost; decode writes Python's U+FFFD for each invalid subpart.
  EXPECT_EQ(glm4().decode(ids), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c");
}

TEST(Glm4TokenizerReal, RandomRoundTrip) {
  SKIP_WITHOUT(glm4_path());
  std::mt19937 rng(11);
  const std::vector<std::string> atoms = {"你", "好", " ", "\n", "\r\n", "\t", "a", "Z", "1", "22", "👋", "，", "'s",
                                          "'LL", "  ", "def", "é", "\u200d", "!!", "<|user|>"};
  for (int n = 0; n < 300; ++n) {
    std::string s;
    for (int k = int(rng() % 16); k >= 0; --k) s += atoms[rng() % atoms.size()];
    EXPECT_EQ(glm4().decode(glm4().encode_text(s)), s) << "[" << s << "]";
    EXPECT_EQ(glm4().decode(glm4().encode(s, false), true), s) << "[" << s << "]";
  }
}

TEST(Utf8Replace, PythonMaximalSubparts) {
  EXPECT_EQ(utf8_replace_invalid("ok"), "ok");
  EXPECT_EQ(utf8_replace_invalid("\xe4\xbd"), "\xEF\xBF\xBD");             // truncated: one U+FFFD
  EXPECT_EQ(utf8_replace_invalid("\xe4\xbd\xa0"), "你");
  EXPECT_EQ(utf8_replace_invalid("\xed\xa0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(utf8_replace_invalid("\xf0\x9f\x91x"), "\xEF\xBF\xBDx");
}

// ---- detection and the CLI contract ---------------------------------------------------------

TEST(TokenizerKind, DetectedFromContent) {
  SKIP_WITHOUT(glm4_path());
  SKIP_WITHOUT(glm2_path());
  EXPECT_EQ(detect_tokenizer_kind(glm4_path()), TokenizerKind::kGlm4Tiktoken);
  EXPECT_EQ(detect_tokenizer_kind(glm2_path()), TokenizerKind::kChatGLM2Spm);
  EXPECT_EQ(detect_tokenizer_kind(test::source_dir() + "/tests/data/tiny_chatglm.model"), TokenizerKind::kChatGLM6B);
  const std::string dir = test::make_temp_dir("tokkind");
  const std::string junk = dir + "/tokenizer.model";
  std::ofstream(junk) << "not a tokenizer\n";
  try {
    detect_tokenizer_kind(junk);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(junk), std::string::npos) << e.what();
  }
  std::ofstream(dir + "/bad_rank.model") << "IQ== 0\nIg== x\n";
  try {
    Glm4Tokenizer::load(dir + "/bad_rank.model");
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}

std::string tokenize_cmd(const std::string& tok, const std::string& args) {
  return test::glmpipe_bin() + " tokenize --tokenizer '" + tok + "' " + args;
}

TEST(TokenizeCli, FamiliesByContent) {
  SKIP_WITHOUT(glm4_path());
  SKIP_WITHOUT(glm2_path());
  auto r = test::run_command(tokenize_cmd(glm4_path(), "--text 你好"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "151331,151333,109377\n");
  EXPECT_NE(r.err.find("tiktoken"), std::string::npos) << r.err;
  r = test::run_command(tokenize_cmd(glm4_path(), "--family glm4 --no-special-tokens --text '<|user|>'"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "151336\n");  // the official encode parses special text
  r = test::run_command(tokenize_cmd(glm2_path(), "--family chatglm2 --text 你好"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "64790,64792,36474,54591\n");
  r = test::run_command(tokenize_cmd(glm2_path(), "--family chatglm3 --no-special-tokens --text 你好"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "36474,54591\n");
  r = test::run_command(tokenize_cmd(glm2_path(), "--decode 64790,64792,36474,54591"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "你好\n");
}

TEST(TokenizeCli, FamilyMustFitTheFile) {
  SKIP_WITHOUT(glm4_path());
  auto r = test::run_command(tokenize_cmd(glm4_path(), "--family chatglm3 --text hi"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("chatglm3"), std::string::npos) << r.err;
  r = test::run_command(tokenize_cmd(glm4_path(), "--family chatglm9 --text hi"));
  EXPECT_NE(r.exit_code, 0);
}

TEST(TokenizeCli, V1StillWorks) {
  SKIP_WITHOUT(v1_path());
  auto r = test::run_command(tokenize_cmd(v1_path(), "--family chatglm --text 你好"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "5,74874,130001,130004\n");
  r = test::run_command(tokenize_cmd(v1_path(), "--no-special-tokens --text 你好"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "5,74874\n");
}

}  // namespace
}  // namespace glmpipe
