// RegexSplitter: the pre-tokenizer of tiktoken-style BPE tokenizers. A PCRE2 pattern (UTF + Unicode
// properties, JIT when available) is matched left to right as tiktoken's find_iter; every match
// is one piece. Bytes no match covers (only possible for invalid UTF-8, which the GLM-4 pattern
// never matches) become pieces of their own, so that no input byte is lost.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace glmpipe {

class RegexSplitter {
 public:
  // Throws glmpipe::Error with PCRE2's message and offset if the pattern does not compile.
  explicit RegexSplitter(const std::string& pattern);
  // Pieces in order; their concatenation is `text`. Thread-safe (match data per call).
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  struct Code;
  std::shared_ptr<Code> code_;
};

// GLM-4's pattern (tokenization_chatglm.py, chatglm2-family.md §2.2).
extern const char* const kGlm4PreTokenizerPattern;

}  // namespace glmpipe
