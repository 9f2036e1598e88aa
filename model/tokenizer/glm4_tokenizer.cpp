#include "model/tokenizer/glm4_tokenizer.h"

#include <fstream>
#include <sstream>

#include "common/error.h"

namespace glmpipe {

const std::vector<std::string> Glm4Tokenizer::kSpecials = {
    "<|endoftext|>", "[MASK]",         "[gMASK]",          "[sMASK]",          "<sop>",
    "<eop>",         "<|system|>",     "<|user|>",         "<|assistant|>",    "<|observation|>",
    "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>"};

namespace {

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Standard base64 with '=' padding; false on any other character or a bad length.
bool base64_decode(const std::string& in, std::string& out) {
  out.clear();
  if (in.empty() || in.size() % 4 != 0) return false;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '=') {
      if (i + 2 < in.size() || (i + 1 < in.size() && in[i + 1] != '=')) return false;
      break;
    }
    const int v = base64_value(in[i]);
    if (v < 0) return false;
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return true;
}

}  // namespace

Glm4Tokenizer Glm4Tokenizer::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  GLMPIPE_CHECK(f.good()) << "tokenizer model " << path << " does not exist or cannot be read";
  auto data = std::make_shared<Data>();
  data->path = path;
  std::string line, token;
  for (size_t lineno = 1; std::getline(f, line); ++lineno) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const auto sp = line.find(' ');
    long rank = -1;
    try {
      size_t used = 0;
      if (sp != std::string::npos) rank = std::stol(line.substr(sp + 1), &used);
      if (sp == std::string::npos || used != line.size() - sp - 1) rank = -1;
    } catch (const std::exception&) {
      rank = -1;
    }
    GLMPIPE_CHECK(rank >= 0 && rank < (1 << 24) && base64_decode(line.substr(0, sp), token))
        << "tiktoken file " << path << " line " << lineno << ": expected 'base64 rank'";
    if (data->decoder.size() <= size_t(rank)) data->decoder.resize(size_t(rank) + 1);
    GLMPIPE_CHECK(data->decoder[size_t(rank)].empty()) << "tiktoken file " << path << " line " << lineno
                                                       << ": rank " << rank << " appears twice";
    data->decoder[size_t(rank)] = token;
  }
  GLMPIPE_CHECK(!data->decoder.empty()) << "tiktoken file " << path << " has no ranks";
  for (size_t r = 0; r < data->decoder.size(); ++r) {
    GLMPIPE_CHECK(!data->decoder[r].empty()) << "tiktoken file " << path << ": rank " << r << " is missing";
    data->encoder.emplace(std::string_view(data->decoder[r]), int(r));
  }
  Glm4Tokenizer tok;
  tok.n_ranks_ = static_cast<int>(data->decoder.size());
  tok.data_ = std::move(data);
  return tok;
}

std::vector<int> Glm4Tokenizer::encode_text(const std::string& text) const {
  std::vector<int> ids;
  for (std::string_view piece : splitter_.split(text)) {
    const auto it = data_->encoder.find(piece);
    if (it != data_->encoder.end()) {
      ids.push_back(it->second);
      continue;
    }
    const std::vector<int> parts = byte_pair_encode(piece, data_->encoder);
    ids.insert(ids.end(), parts.begin(), parts.end());
  }
  return ids;
}

std::vector<int> Glm4Tokenizer::encode(const std::string& text, bool add_special) const {
  std::vector<int> ids;
  if (add_special) ids = {special_id("[gMASK]"), special_id("<sop>")};
  size_t pos = 0, chunk = 0;
  while (pos < text.size()) {
    // Leftmost, then longest special at `pos` (HF's added-token trie).
    size_t best = std::string::npos;
    if (text[pos] == '<' || text[pos] == '[')
      for (size_t s = 0; s < kSpecials.size(); ++s)
        if (text.compare(pos, kSpecials[s].size(), kSpecials[s]) == 0 &&
            (best == std::string::npos || kSpecials[s].size() > kSpecials[best].size()))
          best = s;
    if (best == std::string::npos) {
      ++pos;
      continue;
    }
    const std::vector<int> part = encode_text(text.substr(chunk, pos - chunk));
    ids.insert(ids.end(), part.begin(), part.end());
    ids.push_back(n_ranks_ + static_cast<int>(best));
    pos += kSpecials[best].size();
    chunk = pos;
  }
  const std::vector<int> tail = encode_text(text.substr(chunk));
  ids.insert(ids.end(), tail.begin(), tail.end());
  return ids;
}

std::string Glm4Tokenizer::decode(const std::vector<int>& ids, bool keep_specials) const {
  std::string bytes;
  for (int id : ids) {
    if (id >= 0 && id < n_ranks_)
      bytes += data_->decoder[size_t(id)];
    else if (keep_specials && id >= n_ranks_ && id < num_ids())
      bytes += kSpecials[size_t(id - n_ranks_)];
  }
  return utf8_replace_invalid(bytes);
}

std::string Glm4Tokenizer::token_bytes(int id) const {
  if (id >= 0 && id < n_ranks_) return data_->decoder[size_t(id)];
  if (id >= n_ranks_ && id < num_ids()) return kSpecials[size_t(id - n_ranks_)];
  return "";
}

int Glm4Tokenizer::special_id(const std::string& token) const {
  for (size_t s = 0; s < kSpecials.size(); ++s)
    if (kSpecials[s] == token) return n_ranks_ + static_cast<int>(s);
  return -1;
}

std::string utf8_replace_invalid(const std::string& s) {
  static const std::string kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int need = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c < 0x80) need = 0;
    else if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else need = -1;
    if (need < 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    // Accept the longest valid prefix of the sequence; a truncated one is one maximal subpart.
    size_t j = i + 1;
    int got = 0;
    while (got < need && j < s.size()) {
      const unsigned char cc = static_cast<unsigned char>(s[j]);
      const bool ok = got == 0 ? (cc >= lo && cc <= hi) : (cc >= 0x80 && cc <= 0xBF);
      if (!ok) break;
      ++j, ++got;
    }
    if (got == need) out.append(s, i, j - i);
    else out += kReplacement;
    i = j;
  }
  return out;
}

}  // namespace glmpipe
