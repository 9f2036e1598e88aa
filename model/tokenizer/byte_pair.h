// Byte-level BPE by rank, as tiktoken's byte_pair_merge: start from single bytes and repeatedly
// merge the adjacent pair whose concatenation has the lowest rank (ties: leftmost), until no
// adjacent pair is a token. Used by the GLM-4 tokenizer on each pre-tokenized piece.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace glmpipe {

// token bytes → rank. Views point into storage owned by the caller (the tokenizer's decoder).
using RankMap = std::unordered_map<std::string_view, int>;

// The ranks of the tokens `piece` splits into. Every single byte must have a rank (true for
// byte-level vocabularies: tiktoken files list all 256); throws glmpipe::Error otherwise.
// O(n log n) in the piece length (a heap of candidate merges, stale entries skipped).
std::vector<int> byte_pair_encode(std::string_view piece, const RankMap& ranks);

}  // namespace glmpipe
