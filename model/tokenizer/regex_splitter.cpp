#include "model/tokenizer/regex_splitter.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "common/error.h"

namespace glmpipe {

const char* const kGlm4PreTokenizerPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct RegexSplitter::Code {
  pcre2_code* code = nullptr;
  ~Code() {
    if (code) pcre2_code_free(code);
  }
};

RegexSplitter::RegexSplitter(const std::string& pattern) : code_(std::make_shared<Code>()) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  // UCP: \s, \d and case-folding follow Unicode, as tiktoken's (Rust) regex does.
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &offset, nullptr);
  if (!code_->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    GLMPIPE_FAIL() << "pre-tokenizer regex does not compile at offset " << offset << ": "
                   << reinterpret_cast<const char*>(msg);
  }
  pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE);  // optional: falls back to the interpreter
}

std::vector<std::string_view> RegexSplitter::split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_->code, nullptr);
  GLMPIPE_CHECK(md != nullptr) << "pre-tokenizer: out of memory";
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    const int rc = pcre2_match(code_->code, subject, text.size(), pos, 0, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(md);
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof(msg));
      GLMPIPE_FAIL() << "pre-tokenizer: " << reinterpret_cast<const char*>(msg);
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (b > pos) pieces.push_back(text.substr(pos, b - pos));  // bytes no match covers
    if (e == b) {  // an empty match cannot happen with the GLM-4 pattern; never loop on one
      pos = b + 1;
      pieces.push_back(text.substr(b, 1));
      continue;
    }
    pieces.push_back(text.substr(b, e - b));
    pos = e;
  }
  if (pos < text.size()) pieces.push_back(text.substr(pos));
  pcre2_match_data_free(md);
  return pieces;
}

}  // namespace glmpipe
