// The ChatGLM2-6B / ChatGLM3-6B tokenizer: tokenizer.model (SentencePiece BPE, 64789 pieces:
// <unk> 0, <s> 1, </s> 2 = eos, byte pieces 3..258) plus specials appended after the pieces by the
// Python wrapper (chatglm2-family.md §2.1):
//   64789 [MASK], 64790 [gMASK], 64791 [sMASK], 64792 sop, 64793 eop,
//   ChatGLM3 only: 64794 <|system|>, 64795 <|user|>, 64796 <|assistant|>, 64797 <|observation|>.
// encode(text) = [gMASK] sop + sentencepiece(text); special-token text in `text` is never parsed
// (ChatGLM3's encode_special_tokens defaults to False), so role tokens only enter a prompt by id.
//
//   auto tok = ChatGLM2Tokenizer::load("tokenizer.model", /*chatglm3_roles=*/true);
//   tok.encode("你好")  // [64790, 64792, 36474, 54591]
#pragma once

#include <map>
#include <string>
#include <vector>

#include "model/tokenizer/spm_processor.h"
#include "model/tokenizer/text_tokenizer.h"

namespace glmpipe {

class ChatGLM2Tokenizer : public Tokenizer {
 public:
  // chatglm3_roles: append ChatGLM3's four role tokens after eop. Throws glmpipe::Error naming the
  // path if the file is not a sentencepiece model or is v1's ice_text.model.
  static ChatGLM2Tokenizer load(const std::string& path, bool chatglm3_roles);

  TokenizerKind kind() const override { return TokenizerKind::kChatGLM2Spm; }
  std::vector<int> encode(const std::string& text, bool add_special = true) const override;
  std::vector<int> encode_text(const std::string& text) const override { return sp_.encode(text); }
  // Without keep_specials: one sentencepiece decode of the non-special ids (HF ChatGLM2). With it:
  // specials written as their text between separately decoded runs (ChatGLM3 SPTokenizer.decode).
  std::string decode(const std::vector<int>& ids, bool keep_specials = false) const override;
  std::string token_bytes(int id) const override;
  int special_id(const std::string& token) const override;
  int num_ids() const override { return n_words_ + static_cast<int>(specials_.size()); }
  const std::string& file_path() const override { return sp_.path(); }

  bool has_role_tokens() const { return specials_.size() > 5; }
  int n_words() const { return n_words_; }  // sentencepiece pieces (64789)

 private:
  ChatGLM2Tokenizer() = default;
  bool is_special(int id) const { return id >= n_words_ && id < num_ids(); }
  SpmProcessor sp_;
  int n_words_ = 0;
  std::vector<std::string> specials_;  // text of id n_words_ + i
};

}  // namespace glmpipe
