#include "model/chat/text_util.h"

#include <cstdint>

namespace glmpipe {

namespace {

// Python str.isspace() code points.
bool is_py_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Decodes the code point starting at byte i (len set; invalid bytes are one non-space byte).
uint32_t code_point_at(const std::string& s, size_t i, size_t& len) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
  if (len == 1) return c < 0x80 ? c : 0xFFFFFFFF;
  if (i + len > s.size()) return len = 1, 0xFFFFFFFF;
  uint32_t cp = c & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

}  // namespace

std::string py_strip(const std::string& s) {
  size_t b = 0, len = 0;
  while (b < s.size() && is_py_space(code_point_at(s, b, len))) b += len;
  size_t e = b, last_end = b;
  while (e < s.size()) {
    const bool space = is_py_space(code_point_at(s, e, len));
    e += len;
    if (!space) last_end = e;
  }
  return s.substr(b, last_end - b);
}

std::vector<std::string> py_split(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(sep, pos)) != std::string::npos; pos = hit + sep.size())
    out.push_back(s.substr(pos, hit - pos));
  out.push_back(s.substr(pos));
  return out;
}

void replace_all_in(std::string& s, const std::string& from, const std::string& to) {
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out += to;
  }
  out.append(s, pos, std::string::npos);
  s.swap(out);
}

}  // namespace glmpipe
