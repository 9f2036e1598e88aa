// ChatGLM-6B tokenizer: exact ids of the reference vectors with the real ice_text.model (skipped
// without ../shared/data), plus always-run tests on tests/data/tiny_chatglm.model (same piece
// kinds as the real model, different ids), the streaming decoder and the tokenize CLI.
#include "model/tokenizer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "model/chat_prompt.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

using test::shared_data;

std::string real_model_path() { return shared_data() + "/tokenizers/chatglm-6b-ice_text.model"; }
std::string vectors_path() { return shared_data() + "/tokenizers/chatglm-6b-vectors.json"; }
std::string tiny_model_path() { return test::source_dir() + "/tests/data/tiny_chatglm.model"; }

#define SKIP_WITHOUT_REAL_TOKENIZER()                                                    \
  if (!test::file_exists(real_model_path()) || !test::file_exists(vectors_path()))       \
  GTEST_SKIP() << "needs " << real_model_path() << " and " << vectors_path()             \
               << " (../shared/data absent)"

const ChatGLMTokenizer& real_tok() {
  static ChatGLMTokenizer tok = ChatGLMTokenizer::load(real_model_path());
  return tok;
}
const ChatGLMTokenizer& tiny_tok() {
  static ChatGLMTokenizer tok = ChatGLMTokenizer::load(tiny_model_path());
  return tok;
}

struct Vector {
  std::string text;
  std::vector<int> ids;
};
std::vector<Vector> load_vectors() {
  std::ifstream f(vectors_path());
  nlohmann::json j = nlohmann::json::parse(f);
  std::vector<Vector> out;
  for (const auto& c : j.at("cases")) out.push_back({c.at("text"), c.at("ids").get<std::vector<int>>()});
  return out;
}

// NFKC (nmt_nfkc) folds the full-width punctuation of the vectors; decode gives the folded text.
std::string nfkc_punct(std::string s) {
  for (auto [from, to] : {std::pair<std::string, std::string>{"：", ":"}, {"，", ","}, {"！", "!"}}) {
    for (size_t p; (p = s.find(from)) != std::string::npos;) s.replace(p, from.size(), to);
  }
  return s;
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + size_t(len) > s.size()) return false;
    for (int k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + size_t(k)]) & 0xC0) != 0x80) return false;
    i += size_t(len);
  }
  return true;
}

std::string join_ids(const std::vector<int>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

// ---- real ice_text.model ------------------------------------------------------------------

TEST(TokenizerReal, EncodesReferenceVectorsExactly) {
  SKIP_WITHOUT_REAL_TOKENIZER();
  auto vectors = load_vectors();
  ASSERT_EQ(vectors.size(), 3u);
  for (const auto& v : vectors) EXPECT_EQ(real_tok().encode(v.text), v.ids) << v.text;
}

TEST(TokenizerReal, DecodesReferenceVectorsBack) {
  SKIP_WITHOUT_REAL_TOKENIZER();
  for (const auto& v : load_vectors()) {
    std::string text = real_tok().decode(v.ids);
    EXPECT_EQ(text, nfkc_punct(v.text));
    // The chat post-processing restores the full-width punctuation next to CJK characters.
    EXPECT_EQ(postprocess_response(text), v.text);
  }
}

TEST(TokenizerReal, SpecialIdsAndPieceTypes) {
  SKIP_WITHOUT_REAL_TOKENIZER();
  const auto& t = real_tok();
  EXPECT_EQ(t.vocab_size(), 130344);
  EXPECT_EQ(t.mask_id(), 130000);
  EXPECT_EQ(t.gmask_id(), 130001);
  EXPECT_EQ(t.sop_id(), 130004);
  EXPECT_EQ(t.bos_id(), 130004);
  EXPECT_EQ(t.eop_id(), 130005);
  EXPECT_EQ(t.eos_id(), 130005);
  EXPECT_EQ(t.pad_id(), 3);
  using PT = ChatGLMTokenizer::PieceType;
  EXPECT_EQ(t.piece_type(0), PT::kUnknown);
  EXPECT_EQ(t.piece_type(1), PT::kControl);
  EXPECT_EQ(t.piece_type(130001), PT::kControl);
  EXPECT_EQ(t.piece_type(4), PT::kUserDefined);
  EXPECT_EQ(t.piece_type(130008), PT::kUserDefined);
  EXPECT_EQ(t.piece_type(130087), PT::kUserDefined);
  EXPECT_EQ(t.piece_type(130088), PT::kByte);
  EXPECT_EQ(t.piece_type(5), PT::kNormal);
  EXPECT_EQ(t.id_to_piece(4), "<n>");
  EXPECT_EQ(t.id_to_piece(130087), "<|blank_80|>");
  EXPECT_EQ(t.piece_to_id("<|blank_2|>"), 130009);
  EXPECT_EQ(t.piece_to_id("no such piece"), -1);
}

TEST(TokenizerReal, WhitespaceTokens) {
  SKIP_WITHOUT_REAL_TOKENIZER();
  const auto& t = real_tok();
  // 81 spaces → <|blank_80|> + an ordinary space; a tab and newlines are atomic pieces.
  std::string text = "a" + std::string(81, ' ') + "b\tc\n\nd";
  auto ids = t.encode(text, false);
  auto count = [&](int id) { return std::count(ids.begin(), ids.end(), id); };
  EXPECT_EQ(count(130087), 1);  // <|blank_80|>
  EXPECT_EQ(count(130008), 1);  // <|tab|>
  EXPECT_EQ(count(4), 2);       // <n>
  EXPECT_EQ(t.decode(t.encode(text)), text);
  // Digits are single pieces.
  auto digits = t.encode("2023", false);
  EXPECT_EQ(digits.size(), 5u) << join_ids(digits);  // ▁ 2 0 2 3
}

TEST(TokenizerReal, DecodeDropsPadAndEmbeddingPaddingIds) {
  SKIP_WITHOUT_REAL_TOKENIZER();
  EXPECT_EQ(real_tok().decode({3, 3, 5, 74874, 130001, 130004, 130005, 130400}), "你好");
}

TEST(TokenizerReal, StreamingEmojiNeverBreaksUtf8) {
  SKIP_WITHOUT_REAL_TOKENIZER();
  // "你好👋！…" from vector 2: 👋 is four byte pieces 130328 130247 130233 130227.
  std::vector<int> ids = {74874, 130328, 130247, 130233, 130227, 35, 65806, 130005};
  StreamDecoder dec(real_tok());
  std::string all;
  std::vector<std::string> chunks;
  for (int id : ids) {
    chunks.push_back(dec.push(id));
    EXPECT_TRUE(valid_utf8(chunks.back())) << "chunk " << chunks.size();
    EXPECT_EQ(chunks.back().find("\xEF\xBF\xBD"), std::string::npos);
    all += chunks.back();
  }
  all += dec.flush();
  EXPECT_EQ(all, real_tok().decode(ids));
  EXPECT_EQ(chunks[1], "");  // first byte of the emoji held back
  EXPECT_EQ(chunks[4], "👋");
}

TEST(TokenizerReal, CliPrintsIds) {
  SKIP_WITHOUT_REAL_TOKENIZER();
  auto v = load_vectors().at(2);
  std::string cmd = test::glmpipe_bin() + " tokenize --tokenizer '" + real_model_path() +
                    "' --text \"$(printf 'def main():\\n    print(%shello world%s)\\t# greeting' \"'\" \"'\")\"";
  auto r = test::run_command(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, join_ids(v.ids) + "\n");
  auto d = test::run_command(test::glmpipe_bin() + " tokenize --tokenizer '" + real_model_path() +
                             "' --decode 5,74874,130001,130004");
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_EQ(d.out, "你好\n");
}

// ---- tiny test model (always available) ---------------------------------------------------

TEST(TokenizerTiny, SpecialIdsByName) {
  const auto& t = tiny_tok();
  EXPECT_EQ(t.gmask_id(), t.piece_to_id("[gMASK]"));
  EXPECT_EQ(t.id_to_piece(t.gmask_id()), "[gMASK]");
  EXPECT_EQ(t.id_to_piece(t.sop_id()), "<sop>");
  EXPECT_EQ(t.id_to_piece(t.eop_id()), "<eop>");
  EXPECT_EQ(t.pad_id(), 3);
  auto ids = t.encode("hello world");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[ids.size() - 2], t.gmask_id());
  EXPECT_EQ(ids.back(), t.sop_id());
  auto plain = t.encode("hello world", false);
  EXPECT_EQ(plain.size() + 2, ids.size());
}

TEST(TokenizerTiny, Preprocess) {
  EXPECT_EQ(ChatGLMTokenizer::preprocess("a\nb\tc"), "a<n>b<|tab|>c");
  EXPECT_EQ(ChatGLMTokenizer::preprocess("a  b   c d"), "a<|blank_2|>b<|blank_3|>c d");
  EXPECT_EQ(ChatGLMTokenizer::preprocess(std::string(81, ' ')), "<|blank_80|> ");
  EXPECT_EQ(ChatGLMTokenizer::preprocess(std::string(163, ' ')), "<|blank_80|><|blank_80|><|blank_3|>");
}

// HF's literal algorithm: replace \n, \t, then runs of k = 80..2 spaces, each left to right.
std::string naive_preprocess(std::string s) {
  auto replace_all = [&](const std::string& from, const std::string& to) {
    for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) s.replace(p, from.size(), to);
  };
  replace_all("\n", "<n>");
  replace_all("\t", "<|tab|>");
  for (int k = 80; k >= 2; --k) replace_all(std::string(size_t(k), ' '), "<|blank_" + std::to_string(k) + "|>");
  return s;
}

std::string random_whitespace_text(std::mt19937& rng) {
  static const char* kWords[] = {"hello", "world", "the", "fox", "12", "你好", "👋", "def", "()"};
  std::string s;
  int parts = int(rng() % 12) + 1;
  for (int p = 0; p < parts; ++p) {
    switch (rng() % 4) {
      case 0: s += std::string(size_t(rng() % 200 + 1), ' '); break;
      case 1: s += rng() % 2 ? "\n" : "\t"; break;
      default: s += kWords[rng() % 9];
    }
  }
  return s;
}

TEST(TokenizerTiny, PreprocessEqualsNaiveReplace) {
  std::mt19937 rng(1234);
  for (int i = 0; i < 300; ++i) {
    std::string text = random_whitespace_text(rng);
    ASSERT_EQ(ChatGLMTokenizer::preprocess(text), naive_preprocess(text)) << i;
  }
}

TEST(TokenizerTiny, RandomWhitespaceRoundTrip) {
  const auto& t = tiny_tok();
  std::mt19937 rng(99);
  for (int i = 0; i < 200; ++i) {
    std::string text = "x" + random_whitespace_text(rng) + "y";  // sentencepiece trims outer spaces
    ASSERT_EQ(t.decode(t.encode(text)), text) << i << ": [" << text << "]";
  }
}

TEST(TokenizerTiny, UserDefinedSymbolsAreAtomic) {
  const auto& t = tiny_tok();
  using PT = ChatGLMTokenizer::PieceType;
  const int nl = t.piece_to_id("<n>"), tab = t.piece_to_id("<|tab|>"), b4 = t.piece_to_id("<|blank_4|>");
  ASSERT_GE(nl, 0);
  EXPECT_EQ(t.piece_type(nl), PT::kUserDefined);
  EXPECT_EQ(t.piece_type(t.gmask_id()), PT::kControl);
  EXPECT_EQ(t.piece_type(t.piece_to_id("<0xF0>")), PT::kByte);
  EXPECT_EQ(t.piece_type(0), PT::kUnknown);
  auto ids = t.encode("def main():\n    print('hello world')\t# greeting", false);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), nl), 1) << join_ids(ids);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), tab), 1) << join_ids(ids);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), b4), 1) << join_ids(ids);
}

TEST(TokenizerTiny, RoundTrip) {
  const auto& t = tiny_tok();
  for (const std::string& text : std::vector<std::string>{"def main():\n    print('hello world')\t# greeting",
                           "a" + std::string(81, ' ') + "b\n\n\nc",
                           std::string("numbers 12345 and 你好👋 bytes"),
                           std::string("line one\nline two\n")}) {
    EXPECT_EQ(t.decode(t.encode(text)), text);
  }
  // Control pieces decode to nothing; pad and ids without a piece are dropped.
  auto ids = t.encode("hello");
  ids.insert(ids.begin(), t.pad_id());
  ids.push_back(t.eop_id());
  ids.push_back(t.vocab_size() + 10);
  EXPECT_EQ(t.decode(ids), "hello");
}

TEST(TokenizerTiny, StreamDecoderMatchesDecode) {
  const auto& t = tiny_tok();
  const std::string text = "hi 你好👋 the 🎉 end\nnext  line";
  auto ids = t.encode(text, false);
  ids.push_back(t.eop_id());
  // The emoji must really be spread over byte pieces for this test to mean anything.
  ASSERT_GE(std::count_if(ids.begin(), ids.end(),
                          [&](int id) { return t.piece_type(id) == ChatGLMTokenizer::PieceType::kByte; }),
            8);
  StreamDecoder dec(t);
  std::string all;
  for (int id : ids) {
    std::string chunk = dec.push(id);
    EXPECT_TRUE(valid_utf8(chunk)) << "after id " << id;
    EXPECT_EQ(chunk.find("\xEF\xBF\xBD"), std::string::npos) << "after id " << id;
    all += chunk;
  }
  all += dec.flush();
  EXPECT_EQ(all, t.decode(ids));
  EXPECT_EQ(all, text);
  EXPECT_TRUE(dec.ids().empty());
}

TEST(TokenizerTiny, StreamFlushEmitsHeldBytes) {
  const auto& t = tiny_tok();
  StreamDecoder dec(t);
  EXPECT_EQ(dec.push(t.piece_to_id("<0xF0>")), "");
  EXPECT_EQ(dec.push(t.piece_to_id("<0x9F>")), "");
  std::string rest = dec.flush();
  EXPECT_FALSE(rest.empty());  // an unfinished character is flushed as U+FFFD
  EXPECT_TRUE(valid_utf8(rest));
}

TEST(StableUtf8Prefix, HoldsBackIncompleteText) {
  EXPECT_EQ(stable_utf8_prefix("abc"), 3u);
  EXPECT_EQ(stable_utf8_prefix("ab\xEF\xBF\xBD"), 2u);
  EXPECT_EQ(stable_utf8_prefix("ab\xEF\xBF\xBD\xEF\xBF\xBD"), 2u);
  EXPECT_EQ(stable_utf8_prefix("ab\xF0\x9F"), 2u);
  EXPECT_EQ(stable_utf8_prefix("ab\xF0\x9F\x91\x8B"), 6u);
  EXPECT_EQ(stable_utf8_prefix("你"), 3u);
  EXPECT_EQ(stable_utf8_prefix(""), 0u);
}

TEST(TokenizerErrors, MissingModelNamesPath) {
  try {
    ChatGLMTokenizer::load("/nonexistent/ice_text.model");
    FAIL() << "expected glmpipe::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/ice_text.model"), std::string::npos) << e.what();
  }
}

TEST(TokenizerErrors, NotAModel) {
  std::string dir = test::make_temp_dir("tok");
  std::ofstream(dir + "/bad.model") << "this is not a sentencepiece model";
  EXPECT_THROW(ChatGLMTokenizer::load(dir + "/bad.model"), Error);
}

TEST(TokenizerErrors, CliFailsOnMissingModel) {
  auto r = test::run_command(test::glmpipe_bin() + " tokenize --tokenizer /nonexistent/x.model --text hi");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("/nonexistent/x.model"), std::string::npos) << r.err;
}

TEST(TokenizerTiny, CliRoundTrip) {
  const auto& t = tiny_tok();
  auto ids = t.encode("hello world");
  auto r = test::run_command(test::glmpipe_bin() + " tokenize --tokenizer '" + tiny_model_path() +
                             "' --text 'hello world' --decode " + join_ids(ids));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, join_ids(ids) + "\nhello world\n");
}

}  // namespace
}  // namespace glmpipe
