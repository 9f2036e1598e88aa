// byte_pair_encode (heap, O(n log n)) against a direct port of tiktoken's quadratic
// _byte_pair_merge on random vocabularies and pieces; and the regex pre-tokenizer's coverage.
#include "model/tokenizer/byte_pair.h"

#include <gtest/gtest.h>

#include <climits>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "model/tokenizer/regex_splitter.h"

namespace glmpipe {
namespace {

// tiktoken src/lib.rs _byte_pair_merge + byte_pair_encode, transcribed.
std::vector<int> reference_bpe(const std::string& piece, const RankMap& ranks) {
  auto get = [&](size_t b, size_t e) {
    auto it = ranks.find(std::string_view(piece).substr(b, e - b));
    return it == ranks.end() ? INT_MAX : it->second;
  };
  if (piece.size() == 1) return {get(0, 1)};
  std::vector<std::pair<size_t, int>> parts;
  for (size_t i = 0; i + 1 < piece.size(); ++i) parts.push_back({i, get(i, i + 2)});
  parts.push_back({piece.size() - 1, INT_MAX});
  parts.push_back({piece.size(), INT_MAX});
  auto rank_at = [&](size_t i) { return i + 3 < parts.size() ? get(parts[i].first, parts[i + 3].first) : INT_MAX; };
  while (true) {
    int best = INT_MAX;
    size_t at = 0;
    for (size_t i = 0; i + 1 < parts.size(); ++i)
      if (parts[i].second < best) best = parts[i].second, at = i;
    if (best == INT_MAX) break;
    if (at > 0) parts[at - 1].second = rank_at(at - 1);
    parts[at].second = rank_at(at);
    parts.erase(parts.begin() + long(at) + 1);
  }
  std::vector<int> out;
  for (size_t i = 0; i + 1 < parts.size(); ++i) out.push_back(get(parts[i].first, parts[i + 1].first));
  return out;
}

TEST(BytePair, EqualsTiktokenMergeOnRandomVocabularies) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 40; ++trial) {
    // Alphabet of 4 bytes; random multi-byte tokens with random (distinct) ranks.
    std::deque<std::string> storage;
    RankMap ranks;
    std::vector<int> rank_pool(400);
    for (int i = 0; i < 400; ++i) rank_pool[size_t(i)] = i;
    std::shuffle(rank_pool.begin(), rank_pool.end(), rng);
    size_t next = 0;
    for (char c : std::string("abcd")) {
      storage.push_back(std::string(1, c));
      ranks.emplace(storage.back(), rank_pool[next++]);
    }
    while (next < 120) {
      std::string t;
      for (int k = 2 + int(rng() % 4); k > 0; --k) t += "abcd"[rng() % 4];
      storage.push_back(t);
      if (ranks.emplace(storage.back(), rank_pool[next]).second) ++next;
    }
    for (int p = 0; p < 50; ++p) {
      std::string piece;
      for (int k = 1 + int(rng() % 40); k > 0; --k) piece += "abcd"[rng() % 4];
      std::vector<int> expected = reference_bpe(piece, ranks);
      if (auto it = ranks.find(piece); it != ranks.end()) expected = {it->second};
      ASSERT_EQ(byte_pair_encode(piece, ranks), expected) << piece;
    }
  }
}

TEST(BytePair, LongPieceIsFast) {
  std::deque<std::string> storage = {"a", "aa", "aaaa"};
  RankMap ranks = {{storage[0], 0}, {storage[1], 1}, {storage[2], 2}};
  const std::string piece(200000, 'a');
  const auto ids = byte_pair_encode(piece, ranks);
  EXPECT_EQ(ids, std::vector<int>(50000, 2));
}

TEST(RegexSplitter, PiecesCoverTheInput) {
  RegexSplitter s(kGlm4PreTokenizerPattern);
  const std::string text = "Hello  world's 12345\n\n  \xff\xfe tab\there 你好！";
  std::string joined;
  for (auto p : s.split(text)) joined += std::string(p);
  EXPECT_EQ(joined, text);
  const auto pieces = s.split("I've 12345  x");
  std::vector<std::string> got(pieces.begin(), pieces.end());
  EXPECT_EQ(got, (std::vector<std::string>{"I", "'ve", " ", "123", "45", " ", " x"}));
}

}  // namespace
}  // namespace glmpipe
