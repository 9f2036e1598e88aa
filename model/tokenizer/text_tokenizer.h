// Tokenizer: what every ChatGLM-family tokenizer offers the runtime (chat, serve, batch,
// generate --prompt, tokenize). Three implementations, one per kind of tokenizer file:
//   kChatGLM6B   ice_text.model, SentencePiece unigram + ChatGLM's whitespace tokens (model/tokenizer.h)
//   kChatGLM2Spm tokenizer.model of ChatGLM2-6B / ChatGLM3-6B, SentencePiece BPE; the specials
//                ([gMASK] sop …, ChatGLM3's role tokens) are appended ids, not pieces
//                (model/tokenizer/chatglm2_tokenizer.h)
//   kGlm4Tiktoken tokenizer.model of GLM-4-9B: base64 token + rank lines, byte-level BPE after a
//                regex pre-tokenizer; specials 151329..151342 (model/tokenizer/glm4_tokenizer.h)
// load_tokenizer() (model/tokenizer/tokenizer_loader.h) detects the kind from the file's content.
#pragma once

#include <string>
#include <vector>

namespace glmpipe {

enum class TokenizerKind { kChatGLM6B, kChatGLM2Spm, kGlm4Tiktoken };
const char* tokenizer_kind_name(TokenizerKind k);  // "chatglm-6b sentencepiece" | …

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual TokenizerKind kind() const = 0;

  // The official tokenizer's encode(text) (HF `encode(text, add_special_tokens=add_special)`):
  // the family's special prefix/suffix when add_special; special-token text inside `text` is
  // handled as the official tokenizer does (GLM-4 turns "<|user|>" into its id; the others do not).
  virtual std::vector<int> encode(const std::string& text, bool add_special = true) const = 0;
  // Text only, for chat content: no prefix/suffix and never a special id, whatever the text says.
  virtual std::vector<int> encode_text(const std::string& text) const = 0;
  // Decodes ids to text. Special ids are dropped, or written as their text with keep_specials
  // (ChatGLM3/GLM-4 response parsing splits on "<|assistant|>"). Ids with no token (embedding
  // padding rows) are dropped. Invalid UTF-8 becomes U+FFFD.
  virtual std::string decode(const std::vector<int>& ids, bool keep_specials = false) const = 0;
  // The bytes one token stands for (OpenAI logprobs "token"/"bytes", text offsets): a piece's text
  // with its leading-space marker as a space, a byte piece as its byte (may be part of a UTF-8
  // character), a special as its text; "" for ids with no token.
  virtual std::string token_bytes(int id) const = 0;

  // Id of a special token by its text ("[gMASK]", "sop", "<|user|>", …), -1 if the family has none.
  virtual int special_id(const std::string& token) const = 0;
  // One past the largest id the tokenizer can produce (pieces + specials).
  virtual int num_ids() const = 0;
  virtual const std::string& file_path() const = 0;
};

}  // namespace glmpipe
