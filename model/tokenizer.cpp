#include "model/tokenizer.h"

#include <cstdlib>

#include "common/error.h"

namespace glmpipe {

namespace {

constexpr int kMaxBlank = 80;

std::string blank_token(int k) { return "<|blank_" + std::to_string(k) + "|>"; }

// Single pass, equal to HF's replace("<n>"), replace("<|tab|>"), replace("<|blank_k|>") for
// k = 2..80 (the tokens cannot overlap: each spans one '<' to the next '>').
std::string postprocess_whitespace(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  static const std::string kBlank = "<|blank_";
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '<') {
      if (text.compare(i, 3, "<n>") == 0) {
        out += '\n';
        i += 3;
        continue;
      }
      if (text.compare(i, 7, "<|tab|>") == 0) {
        out += '\t';
        i += 7;
        continue;
      }
      if (text.compare(i, kBlank.size(), kBlank) == 0) {
        size_t j = i + kBlank.size();
        int k = 0, digits = 0;
        while (j < text.size() && digits < 3 && text[j] >= '0' && text[j] <= '9')
          k = k * 10 + (text[j++] - '0'), ++digits;
        // Only the canonical spellings 2..80 (no leading zero), as the HF loop.
        if (digits > 0 && text[i + kBlank.size()] != '0' && k >= 2 && k <= kMaxBlank &&
            text.compare(j, 2, "|>") == 0) {
          out.append(size_t(k), ' ');
          i = j + 2;
          continue;
        }
      }
    }
    out += text[i++];
  }
  return out;
}

}  // namespace


ChatGLMTokenizer ChatGLMTokenizer::load(const std::string& model_path) {
  ChatGLMTokenizer tok;
  tok.sp_ = SpmProcessor::load(model_path);
  tok.path_ = model_path;
  tok.vocab_size_ = tok.sp_.piece_size();
  tok.gmask_ = tok.piece_to_id("[gMASK]");
  tok.mask_ = tok.piece_to_id("[MASK]");
  tok.sop_ = tok.piece_to_id("<sop>");
  tok.eop_ = tok.piece_to_id("<eop>");
  tok.pad_ = tok.piece_to_id("<pad>");
  GLMPIPE_CHECK(tok.gmask_ >= 0 && tok.sop_ >= 0 && tok.eop_ >= 0)
      << "tokenizer model " << model_path
      << " has no [gMASK]/<sop>/<eop> pieces: not a ChatGLM-6B ice_text.model";
  return tok;
}

// Single pass, equal to HF's replace("\n"), replace("\t"), then replace(" " * k) for k = 80..2:
// a run of L spaces becomes L / 80 <|blank_80|>, then <|blank_r|> (r = L % 80 >= 2) or one space.
std::string ChatGLMTokenizer::preprocess(const std::string& text) {
  std::string s;
  s.reserve(text.size() + 16);
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (c == '\n') {
      s += "<n>";
      ++i;
    } else if (c == '\t') {
      s += "<|tab|>";
      ++i;
    } else if (c == ' ') {
      size_t run = 0;
      while (i < text.size() && text[i] == ' ') ++run, ++i;
      for (; run >= size_t(kMaxBlank); run -= kMaxBlank) s += blank_token(kMaxBlank);
      if (run >= 2) s += blank_token(int(run));
      else if (run == 1) s += ' ';
    } else {
      s += c;
      ++i;
    }
  }
  return s;
}

std::vector<int> ChatGLMTokenizer::encode(const std::string& text, bool add_special) const {
  std::vector<int> ids = sp_.encode(preprocess(text));
  if (add_special) {
    ids.push_back(gmask_);
    ids.push_back(sop_);
  }
  return ids;
}

std::string ChatGLMTokenizer::decode(const std::vector<int>& ids, bool /*keep_specials*/) const {
  std::vector<int> kept;
  kept.reserve(ids.size());
  for (int id : ids)
    if (id != pad_ && id >= 0 && id < vocab_size_) kept.push_back(id);
  return postprocess_whitespace(sp_.decode(kept));
}

std::string ChatGLMTokenizer::id_to_piece(int id) const { return sp_.id_to_piece(id); }

std::string ChatGLMTokenizer::token_bytes(int id) const {
  const std::string p = id_to_piece(id);
  if (p == "<n>") return "\n";
  if (p == "<|tab|>") return "\t";
  if (p.rfind("<|blank_", 0) == 0 && p.size() > 10) return std::string(size_t(std::atoi(p.c_str() + 8)), ' ');
  if (piece_type(id) == PieceType::kControl) return p;
  return spm_piece_bytes(p);
}

int ChatGLMTokenizer::piece_to_id(const std::string& piece) const { return sp_.piece_to_id(piece); }

ChatGLMTokenizer::PieceType ChatGLMTokenizer::piece_type(int id) const { return sp_.piece_type(id); }

int ChatGLMTokenizer::special_id(const std::string& token) const {
  const int id = piece_to_id(token);
  if (id < 0) return -1;
  const PieceType t = piece_type(id);
  return t == PieceType::kControl || t == PieceType::kUserDefined ? id : -1;
}

// ---- streaming -----------------------------------------------------------------------------

size_t stable_utf8_prefix(const std::string& text) {
  size_t end = text.size();
  for (;;) {
    // Drop an incomplete trailing UTF-8 sequence (defensive: sentencepiece emits U+FFFD instead).
    size_t start = end;
    int back = 0;
    while (start > 0 && back < 4 && (static_cast<unsigned char>(text[start - 1]) & 0xC0) == 0x80) {
      --start;
      ++back;
    }
    if (start > 0) {
      unsigned char lead = static_cast<unsigned char>(text[start - 1]);
      int need = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
      if (lead >= 0xC0 && back < need) {
        end = start - 1;
        continue;
      }
    }
    // Drop a trailing U+FFFD (EF BF BD): the rest of the character may still come.
    if (end >= 3 && text.compare(end - 3, 3, "\xEF\xBF\xBD") == 0) {
      end -= 3;
      continue;
    }
    return end;
  }
}

std::string StreamDecoder::push(int id) {
  ids_.push_back(id);
  const std::string text = tok_->decode(ids_);
  const size_t stable = stable_utf8_prefix(text);
  if (stable <= emitted_) return "";
  std::string out = text.substr(emitted_, stable - emitted_);
  emitted_ = stable;
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  if (!ids_.empty()) {
    const std::string text = tok_->decode(ids_);
    if (text.size() > emitted_) out = text.substr(emitted_);
  }
  ids_.clear();
  emitted_ = 0;
  return out;
}

}  // namespace glmpipe
