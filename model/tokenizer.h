// The ChatGLM-6B (v1) tokenizer: ice_text.model (SentencePiece unigram) + ChatGLM's whitespace
// pre/post-processing (spec §2.2, §2.3).
//
//   auto tok = glmpipe::ChatGLMTokenizer::load("ice_text.model");
//   std::vector<int> ids = tok.encode("你好");   // [5, 74874, 130001 [gMASK], 130004 <sop>]
//   std::string text = tok.decode(ids);          // "你好"
//
// sentencepiece is never linked into our processes (its protobuf clashes with libtorch's): the
// work is done by the shim libglmpipe_spm.so (model/spm/spm_shim.cc), dlopen()ed with RTLD_DEEPBIND
// from, in order: $GLMPIPE_SPM_SHIM (a file), the directory of the running executable, and the
// build-tree path GLMPIPE_SPM_SHIM_BUILD_PATH. Thread-safe for concurrent encode/decode.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace glmpipe {

namespace detail {
struct SpmModel;  // a loaded shim model; shared by copies of a tokenizer
}

class ChatGLMTokenizer {
 public:
  enum class PieceType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

  // Loads ice_text.model. Throws glmpipe::Error naming the path if the model or the shim is
  // missing/invalid, or if the model lacks the [gMASK]/<sop>/<eop> pieces.
  static ChatGLMTokenizer load(const std::string& model_path);

  // Spec §2.2: \n→<n>, \t→<|tab|>, space runs (80..2) → <|blank_k|>; sentencepiece encode;
  // with add_special, append [gMASK], <sop>.
  std::vector<int> encode(const std::string& text, bool add_special = true) const;
  // Spec §2.3: drops pad ids and ids with no piece (>= vocab_size(), e.g. embedding padding rows),
  // control pieces decode to "", <n>→\n, <|tab|>→\t, <|blank_k|>→k spaces. Invalid UTF-8 from
  // byte pieces becomes U+FFFD. No punctuation fix-up (see chat_prompt.h postprocess_response).
  std::string decode(const std::vector<int>& ids) const;

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
  std::shared_ptr<detail::SpmModel> model_;
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
  explicit StreamDecoder(ChatGLMTokenizer tokenizer) : tok_(std::move(tokenizer)) {}
  std::string push(int id);
  // Emits whatever is still held back (possibly U+FFFD) and resets the decoder.
  std::string flush();
  const std::vector<int>& ids() const { return ids_; }

 private:
  ChatGLMTokenizer tok_;
  std::vector<int> ids_;
  size_t emitted_ = 0;  // bytes of decode(ids_) already returned
};

// Length of the longest prefix of `text` that does not end in U+FFFD or in an incomplete UTF-8
// sequence (helper of StreamDecoder, exposed for tests).
size_t stable_utf8_prefix(const std::string& text);

}  // namespace glmpipe
