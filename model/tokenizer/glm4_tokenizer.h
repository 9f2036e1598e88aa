// The GLM-4-9B tokenizer: tokenizer.model in tiktoken format (151,329 lines "base64(token) rank"),
// GLM-4's pre-tokenizer regex (model/tokenizer/regex_splitter.h), byte-level BPE by rank
// (model/tokenizer/byte_pair.h), then 14 specials from id = number of ranks (chatglm2-family.md §2.2):
//   151329 <|endoftext|> 151330 [MASK] 151331 [gMASK] 151332 [sMASK] 151333 <sop> 151334 <eop>
//   151335 <|system|> 151336 <|user|> 151337 <|assistant|> 151338 <|observation|>
//   151339 <|begin_of_image|> 151340 <|end_of_image|> 151341 <|begin_of_video|> 151342 <|end_of_video|>
//
//   auto tok = Glm4Tokenizer::load("tokenizer.model");
//   tok.encode("你好")        // [151331 [gMASK], 151333 <sop>, 109377]
//   tok.encode_text("<|user|>")  // the text's BPE ids, never 151336
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/tokenizer/byte_pair.h"
#include "model/tokenizer/regex_splitter.h"
#include "model/tokenizer/text_tokenizer.h"

namespace glmpipe {

class Glm4Tokenizer : public Tokenizer {
 public:
  // Throws glmpipe::Error naming the path and line for a malformed rank file.
  static Glm4Tokenizer load(const std::string& path);

  TokenizerKind kind() const override { return TokenizerKind::kGlm4Tiktoken; }
  // HF's encode: special-token text is split out first (HF added tokens) and becomes its id; the
  // text between is BPE-encoded chunk by chunk; [gMASK] <sop> in front when add_special.
  std::vector<int> encode(const std::string& text, bool add_special = true) const override;
  // tiktoken encode_ordinary: the whole text through the regex and BPE, specials never parsed.
  std::vector<int> encode_text(const std::string& text) const override;
  // Token bytes concatenated, then UTF-8 decoded with errors="replace" (Python's rule).
  std::string decode(const std::vector<int>& ids, bool keep_specials = false) const override;
  std::string token_bytes(int id) const override;
  int special_id(const std::string& token) const override;
  int num_ids() const override { return n_ranks_ + static_cast<int>(kSpecials.size()); }
  const std::string& file_path() const override { return data_->path; }

  int n_ranks() const { return n_ranks_; }
  static const std::vector<std::string> kSpecials;

 private:
  struct Data {
    std::string path;
    std::vector<std::string> decoder;  // rank → token bytes
    RankMap encoder;                   // views into decoder
  };
  Glm4Tokenizer() : splitter_(kGlm4PreTokenizerPattern) {}
  std::shared_ptr<const Data> data_;
  RegexSplitter splitter_;
  int n_ranks_ = 0;
};

// Python's bytes.decode("utf-8", errors="replace"): each maximal invalid subpart becomes U+FFFD.
std::string utf8_replace_invalid(const std::string& bytes);

}  // namespace glmpipe
