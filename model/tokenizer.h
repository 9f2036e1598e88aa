// The ChatGLM-6B (v1) tokenizer: ice_text.model (SentencePiece unigram) + ChatGLM's whitespace
// pre/post-processing (spec §2.2, §2.3).
//
//   auto tok = glmpipe::ChatGLMTokenizer::load("ice_text.model");
//   std::vector<int> ids = tok.encode("你好");   // [5, 74874, 130001 [gMASK], 130004 <sop>]
//   std::string text = tok.decode(ids);          // "你好"
//
// sentencepiece runs in the shim libglmpipe_spm.so (model/tokenizer/spm_processor.h). Copies share
// the loaded model; thread-safe for concurrent encode/decode. The other families' tokenizers are
// in model/tokenizer/ (model/tokenizer/text_tokenizer.h is the interface all of them implement).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/tokenizer/spm_processor.h"
#include "model/tokenizer/text_tokenizer.h"

namespace glmpipe {

class ChatGLMTokenizer : public Tokenizer {
 public:
  using PieceType = SpmProcessor::PieceType;

  // Loads ice_text.model. Throws glmpipe::Error naming the path if the model or the shim is
  // missing/invalid, or if the model lacks the [gMASK]/<sop>/<eop> pieces.
  static ChatGLMTokenizer load(const std::string& model_path);

  // Spec §2.2: \n→<n>, \t→<|tab|>, space runs (80..2) → <|blank_k|>; sentencepiece encode;
  // with add_special, append [gMASK], <sop>.
  std::vector<int> encode(const std::string& text, bool add_special = true) const override;
  // = encode(text, false): v1's sentencepiece never parses special-token text.
  std::vector<int> encode_text(const std::string& text) const override { return encode(text, false); }
  // Spec §2.3: drops pad ids and ids with no piece (>= vocab_size(), e.g. embedding padding rows),
  // control pieces decode to "", <n>→\n, <|tab|>→\t, <|blank_k|>→k spaces. Invalid UTF-8 from
  // byte pieces becomes U+FFFD. No punctuation fix-up (see chat_prompt.h postprocess_response).
  // v1's specials are pieces; keep_specials has no effect.
  std::string decode(const std::vector<int>& ids, bool keep_specials = false) const override;
  // <n> → "\n", <|tab|> → "\t", <|blank_k|> → k spaces, <0xNN> → the byte, ▁ → space.
  std::string token_bytes(int id) const override;

  TokenizerKind kind() const override { return TokenizerKind::kChatGLM6B; }
  int special_id(const std::string& token) const override;  // a control/user-defined piece's id
  int num_ids() const override { return vocab_size_; }
  const std::string& file_path() const override { return path_; }

  // The ChatGLM preprocessing alone (exposed for tests).
  static std::string preprocess(const std::string& text);

  int gmask_id() const { return gmask_; }  // [gMASK] 130001
  int mask_id() const { return mask_; }    // [MASK] 130000, -1 if absent
  int sop_id() const { return sop_; }      // <sop> 130004 (= bos)
  int bos_id() const { return sop_; }
  int eop_id() const { return eop_; }      // <eop> 130005 (= eos, generation stop token)
  int eos_id() const { return eop_; }
  int pad_id() const { return pad_; }      // <pad> 3, -1 if absent
  // Number of sentencepiece pieces (130344 for ice_text.model). The model's embedding has more
  // rows (130528); ids in between have no piece.
  int vocab_size() const { return vocab_size_; }

  std::string id_to_piece(int id) const;  // "" for ids out of range
  int piece_to_id(const std::string& piece) const;  // -1 if absent
  PieceType piece_type(int id) const;  // kUnknown for ids out of range
  const std::string& model_path() const { return path_; }

 private:
  ChatGLMTokenizer() = default;
  SpmProcessor sp_;
  std::string path_;
  int gmask_ = -1, mask_ = -1, sop_ = -1, eop_ = -1, pad_ = -1, vocab_size_ = 0;
};

// Incremental detokenizer for streaming: push() each generated id and print what it returns.
// Every call decodes all ids so far and emits only the new stable suffix; text ending in U+FFFD
// (an incomplete multi-byte character spread over byte pieces) is held back until it completes.
// The concatenation of all push() results and flush() equals tokenizer.decode(all ids) whenever
// decoding is prefix-stable (it is for ChatGLM pieces). Cost per push is O(ids so far).
class StreamDecoder {
 public:
  explicit StreamDecoder(ChatGLMTokenizer tokenizer)
      : tok_(std::make_shared<ChatGLMTokenizer>(std::move(tokenizer))) {}
  explicit StreamDecoder(std::shared_ptr<const Tokenizer> tokenizer) : tok_(std::move(tokenizer)) {}
  std::string push(int id);
  // Emits whatever is still held back (possibly U+FFFD) and resets the decoder.
  std::string flush();
  const std::vector<int>& ids() const { return ids_; }

 private:
  std::shared_ptr<const Tokenizer> tok_;
  std::vector<int> ids_;
  size_t emitted_ = 0;  // bytes of decode(ids_) already returned
};

// Length of the longest prefix of `text` that does not end in U+FFFD or in an incomplete UTF-8
// sequence (helper of StreamDecoder, exposed for tests).
size_t stable_utf8_prefix(const std::string& text);

}  // namespace glmpipe
