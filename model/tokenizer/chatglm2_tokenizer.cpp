#include "model/tokenizer/chatglm2_tokenizer.h"

#include "common/error.h"

namespace glmpipe {

ChatGLM2Tokenizer ChatGLM2Tokenizer::load(const std::string& path, bool chatglm3_roles) {
  ChatGLM2Tokenizer tok;
  tok.sp_ = SpmProcessor::load(path);
  GLMPIPE_CHECK(tok.sp_.piece_to_id("[gMASK]") < 0)
      << "tokenizer " << path << " has a [gMASK] piece: it is ChatGLM-6B's ice_text.model, not ChatGLM2/3's";
  tok.n_words_ = tok.sp_.piece_size();
  tok.specials_ = {"[MASK]", "[gMASK]", "[sMASK]", "sop", "eop"};
  if (chatglm3_roles)
    for (const char* r : {"<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"}) tok.specials_.push_back(r);
  return tok;
}

std::vector<int> ChatGLM2Tokenizer::encode(const std::string& text, bool add_special) const {
  std::vector<int> ids;
  if (add_special) ids = {special_id("[gMASK]"), special_id("sop")};
  const std::vector<int> body = sp_.encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

std::string ChatGLM2Tokenizer::decode(const std::vector<int>& ids, bool keep_specials) const {
  std::string text;
  std::vector<int> run;
  for (int id : ids) {
    if (id >= 0 && id < n_words_) {
      run.push_back(id);
    } else if (keep_specials && is_special(id)) {
      text += sp_.decode(run);
      run.clear();
      text += specials_[size_t(id - n_words_)];
    }
  }
  return text + sp_.decode(run);
}

std::string ChatGLM2Tokenizer::token_bytes(int id) const {
  if (is_special(id)) return specials_[size_t(id - n_words_)];
  if (id < 0 || id >= n_words_) return "";
  const std::string p = sp_.id_to_piece(id);
  return sp_.piece_type(id) == SpmProcessor::PieceType::kControl ? p : spm_piece_bytes(p);
}

int ChatGLM2Tokenizer::special_id(const std::string& token) const {
  for (size_t i = 0; i < specials_.size(); ++i)
    if (specials_[i] == token) return n_words_ + static_cast<int>(i);
  const int id = sp_.piece_to_id(token);  // <unk>, <s>, </s>
  if (id < 0) return -1;
  const auto t = sp_.piece_type(id);
  return t == SpmProcessor::PieceType::kControl || t == SpmProcessor::PieceType::kUnknown ? id : -1;
}

}  // namespace glmpipe
