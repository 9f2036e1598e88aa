// The fuzz build's ChatGLMTokenizer (fuzz targets only): the real one dlopen()s the sentencepiece
// shim with RTLD_DEEPBIND, which AddressSanitizer refuses, and sentencepiece's parsing is not ours to
// fuzz. This one maps bytes to ids (byte b -> id b, then [gMASK], <sop>) over a 256-id vocabulary, so
// the request parser above it sees realistic id lists. Never linked into glmpipe itself.
#include "model/tokenizer.h"

namespace glmpipe {

ChatGLMTokenizer ChatGLMTokenizer::load(const std::string& model_path) {
  ChatGLMTokenizer t;
  t.path_ = model_path;
  t.vocab_size_ = 256;
  t.mask_ = 250, t.gmask_ = 251, t.sop_ = 252, t.eop_ = 253, t.pad_ = 0;
  return t;
}

std::string ChatGLMTokenizer::preprocess(const std::string& text) { return text; }

std::vector<int> ChatGLMTokenizer::encode(const std::string& text, bool add_special) const {
  std::vector<int> ids;
  for (unsigned char c : text) ids.push_back(c);
  if (add_special) ids.insert(ids.end(), {gmask_, sop_});
  return ids;
}

std::string ChatGLMTokenizer::decode(const std::vector<int>& ids, bool) const {
  std::string s;
  for (int id : ids)
    if (id > 0 && id < 250) s += static_cast<char>(id);
  return s;
}

int ChatGLMTokenizer::special_id(const std::string& token) const {
  if (token == "[MASK]") return mask_;
  if (token == "[gMASK]") return gmask_;
  if (token == "<sop>") return sop_;
  if (token == "<eop>") return eop_;
  return -1;
}

std::string ChatGLMTokenizer::id_to_piece(int id) const {
  return id >= 0 && id < vocab_size_ ? std::string(1, static_cast<char>(id)) : std::string();
}
int ChatGLMTokenizer::piece_to_id(const std::string& piece) const {
  return piece.size() == 1 ? static_cast<unsigned char>(piece[0]) : -1;
}
std::string ChatGLMTokenizer::token_bytes(int id) const { return id_to_piece(id); }

// (model/tokenizer/tokenizer_loader.cpp, which loads real files, is not in the fuzz build)
const char* tokenizer_kind_name(TokenizerKind) { return "fuzz stub (bytes as ids)"; }

ChatGLMTokenizer::PieceType ChatGLMTokenizer::piece_type(int id) const {
  return id >= 0 && id < vocab_size_ ? PieceType::kNormal : PieceType::kUnknown;
}

}  // namespace glmpipe
