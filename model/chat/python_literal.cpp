#include "model/chat/python_literal.h"

#include <cctype>
#include <cstdio>
#include <cstring>

#include "common/error.h"

namespace glmpipe {

namespace {

using ojson = nlohmann::ordered_json;

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6)), out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12)), out += char(0x80 | ((cp >> 6) & 0x3F)), out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18)), out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F)), out += char(0x80 | (cp & 0x3F));
  }
}

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}

  ojson call(const std::string& callee) {
    skip();
    expect_word(callee);
    skip();
    expect('(');
    ojson args = ojson::object();
    skip();
    while (peek() != ')') {
      const std::string key = identifier();
      skip();
      expect('=');
      args[key] = value();
      skip();
      if (peek() == ',') ++i_, skip();
      else if (peek() != ')') fail("',' or ')'");
    }
    ++i_;
    skip();
    if (i_ != s_.size()) fail("the end of the call");
    return args;
  }

 private:
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  [[noreturn]] void fail(const std::string& what) const {
    GLMPIPE_FAIL() << "tool call: expected " << what << " at offset " << i_ << " of: " << s_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("'") + c + "'");
    ++i_;
  }
  void expect_word(const std::string& w) {
    if (s_.compare(i_, w.size(), w) != 0) fail("'" + w + "'");
    i_ += w.size();
  }
  std::string identifier() {
    const size_t b = i_;
    while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_' ||
                              static_cast<unsigned char>(s_[i_]) >= 0x80))
      ++i_;
    if (b == i_) fail("a keyword argument name");
    return s_.substr(b, i_ - b);
  }

  ojson value() {
    skip();
    const char c = peek();
    if (c == '\'' || c == '"') return string();
    if ((c == 'r' || c == 'u') && (s_[i_ + 1] == '\'' || s_[i_ + 1] == '"')) return string();
    if (c == '[') return sequence('[', ']');
    if (c == '(') return sequence('(', ')');
    if (c == '{') return dict();
    if (c == '-' || c == '+' || c == '.' || std::isdigit(static_cast<unsigned char>(c))) return number();
    for (auto [word, v] : {std::pair<const char*, ojson>{"True", true}, {"False", false}, {"None", nullptr}}) {
      if (s_.compare(i_, std::strlen(word), word) == 0) {
        i_ += std::strlen(word);
        return v;
      }
    }
    fail("a Python literal");
  }

  ojson sequence(char open, char close) {
    expect(open);
    ojson arr = ojson::array();
    skip();
    while (peek() != close) {
      arr.push_back(value());
      skip();
      if (peek() == ',') ++i_, skip();
      else if (peek() != close) fail(std::string("',' or '") + close + "'");
    }
    ++i_;
    return arr;
  }

  ojson dict() {
    expect('{');
    ojson obj = ojson::object();
    skip();
    while (peek() != '}') {
      const ojson k = value();
      skip();
      expect(':');
      const ojson v = value();
      obj[k.is_string() ? k.get<std::string>() : k.dump()] = v;
      skip();
      if (peek() == ',') ++i_, skip();
      else if (peek() != '}') fail("',' or '}'");
    }
    ++i_;
    return obj;
  }

  ojson number() {
    const size_t b = i_;
    if (peek() == '-' || peek() == '+') ++i_;
    bool is_float = false;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (std::isdigit(static_cast<unsigned char>(c)) || c == '_') {
        ++i_;
      } else if (c == '.' || c == 'e' || c == 'E') {
        is_float = true;
        ++i_;
        if ((c == 'e' || c == 'E') && (peek() == '-' || peek() == '+')) ++i_;
      } else {
        break;
      }
    }
    std::string t;
    for (size_t k = b; k < i_; ++k)
      if (s_[k] != '_') t += s_[k];
    try {
      size_t used = 0;
      ojson v = is_float ? ojson(std::stod(t, &used)) : ojson(std::stoll(t, &used));
      if (used == t.size()) return v;
    } catch (const std::exception&) {
    }
    i_ = b;
    fail("a number");
  }

  ojson string() {
    bool raw = false;
    if (peek() == 'r') raw = true, ++i_;
    else if (peek() == 'u') ++i_;
    const char q = peek();
    const bool triple = s_.compare(i_, 3, std::string(3, q)) == 0;
    i_ += triple ? 3 : 1;
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("the end of the string");
      if (triple ? s_.compare(i_, 3, std::string(3, q)) == 0 : s_[i_] == q) break;
      const char c = s_[i_++];
      if (c != '\\' || raw) {
        if (!triple && c == '\n') fail("the end of the string before a newline");
        out += c;
        continue;
      }
      escape(out);
    }
    i_ += triple ? 3 : 1;
    return out;
  }

  void escape(std::string& out) {
    const char e = peek();
    ++i_;
    switch (e) {
      case 'n': out += '\n'; return;
      case 't': out += '\t'; return;
      case 'r': out += '\r'; return;
      case '0': out += '\0'; return;
      case '\\': case '\'': case '"': out += e; return;
      case '\n': return;  // line continuation
      case 'x': case 'u': case 'U': {
        const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        if (i_ + n > s_.size()) fail("hex digits");
        const std::string hex = s_.substr(i_, n);
        for (char h : hex)
          if (!std::isxdigit(static_cast<unsigned char>(h))) fail("hex digits");
        append_utf8(out, uint32_t(std::stoul(hex, nullptr, 16)));
        i_ += n;
        return;
      }
      default: out += '\\', out += e; return;  // Python keeps unknown escapes
    }
  }

  const std::string& s_;
  size_t i_ = 0;
};

std::string py_str(const std::string& s) {
  const bool dq = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == static_cast<unsigned char>(q)) out += std::string("\\") + q;
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out + q;
}

std::string py_repr(const ojson& v) {
  if (v.is_null()) return "None";
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_string()) return py_str(v.get<std::string>());
  if (v.is_number()) return v.dump();
  std::string out;
  if (v.is_array()) {
    out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + py_repr(v[i]);
    return out + "]";
  }
  out = "{";
  bool first = true;
  for (const auto& [k, x] : v.items()) {
    out += (first ? "" : ", ") + py_str(k) + ": " + py_repr(x);
    first = false;
  }
  return out + "}";
}

}  // namespace

ojson parse_python_kwargs_call(const std::string& code, const std::string& callee) {
  return Parser(code).call(callee);
}

std::string python_kwargs_call(const ojson& args, const std::string& callee) {
  std::string out = callee + "(";
  bool first = true;
  if (args.is_object()) {
    for (const auto& [k, v] : args.items()) {
      out += (first ? "" : ", ") + k + "=" + py_repr(v);
      first = false;
    }
  }
  return out + ")";
}

}  // namespace glmpipe
