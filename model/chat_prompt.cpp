#include "model/chat_prompt.h"

#include <cstdint>

#include "common/error.h"

namespace glmpipe {

namespace {

// A decoded code point with its byte span in the source; cp = -1 for an invalid byte.
struct CodePoint {
  int32_t cp;
  std::string bytes;
};

std::vector<CodePoint> split_utf8(const std::string& s) {
  std::vector<CodePoint> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    int32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    bool ok = len > 0 && i + size_t(len) <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + size_t(k)]);
      if ((cc & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (!ok) {
      out.push_back({-1, s.substr(i, 1)});
      ++i;
    } else {
      out.push_back({cp, s.substr(i, size_t(len))});
      i += size_t(len);
    }
  }
  return out;
}

// Python str.isspace() for the characters str.strip() removes.
bool is_py_space(int32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool is_cjk(int32_t cp) { return cp >= 0x4E00 && cp <= 0x9FFF; }

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out += to;
  }
  out.append(s, pos, std::string::npos);
  s.swap(out);
}

}  // namespace

std::string build_chat_prompt(const ChatHistory& history, const std::string& query) {
  if (history.empty()) return query;
  std::string prompt;
  for (size_t i = 0; i < history.size(); ++i) {
    prompt += "[Round " + std::to_string(i) + "]\n问：" + history[i].first + "\n答：" +
              history[i].second + "\n";
  }
  prompt += "[Round " + std::to_string(history.size()) + "]\n问：" + query + "\n答：";
  return prompt;
}

std::string postprocess_response(const std::string& response) {
  std::vector<CodePoint> cps = split_utf8(response);
  size_t b = 0, e = cps.size();
  while (b < e && is_py_space(cps[b].cp)) ++b;
  while (e > b && is_py_space(cps[e - 1].cp)) --e;
  std::string text;
  for (size_t i = b; i < e; ++i) text += cps[i].bytes;
  replace_all(text, "[[训练时间]]", "2023年");

  cps = split_utf8(text);
  static const std::pair<char, const char*> kPunct[] = {
      {',', "，"}, {'!', "！"}, {':', "："}, {';', "；"}, {'?', "？"}};
  for (const auto& [ascii, full] : kPunct) {
    // Pass 1: CJK then mark. Pass 2: mark then CJK. Replacing a mark never creates or removes a
    // CJK neighbour, so per-position checks equal Python's left-to-right non-overlapping re.sub.
    for (size_t i = 1; i < cps.size(); ++i)
      if (cps[i].cp == ascii && is_cjk(cps[i - 1].cp)) cps[i] = {0, full};
    for (size_t i = 0; i + 1 < cps.size(); ++i)
      if (cps[i].cp == ascii && is_cjk(cps[i + 1].cp)) cps[i] = {0, full};
  }
  std::string out;
  out.reserve(text.size() + 16);
  for (const auto& c : cps) out += c.bytes;
  return out;
}

ChatTurn messages_to_turn(const std::vector<ChatMessage>& messages) {
  GLMPIPE_CHECK(!messages.empty()) << "chat messages: empty list";
  ChatTurn turn;
  std::string system;
  bool have_system = false;
  size_t i = 0;
  if (messages[0].role == "system") {
    system = messages[0].content;
    have_system = true;
    i = 1;
  }
  std::vector<std::string> users, assistants;
  for (; i < messages.size(); ++i) {
    const auto& m = messages[i];
    const bool expect_user = users.size() == assistants.size();
    if (m.role == "user") {
      GLMPIPE_CHECK(expect_user) << "chat messages: message " << i
                                 << " is a second user message in a row (expected assistant)";
      users.push_back(m.content);
    } else if (m.role == "assistant") {
      GLMPIPE_CHECK(!expect_user) << "chat messages: message " << i
                                  << " is an assistant message where a user message is expected";
      assistants.push_back(m.content);
    } else if (m.role == "system") {
      GLMPIPE_FAIL() << "chat messages: message " << i
                     << " has role system; only the first message may be a system message";
    } else {
      GLMPIPE_FAIL() << "chat messages: message " << i << " has unknown role '" << m.role
                     << "' (expected system, user or assistant)";
    }
  }
  GLMPIPE_CHECK(!users.empty() && users.size() == assistants.size() + 1)
      << "chat messages: the last message must be a user message";
  if (have_system) users[0] = system + "\n" + users[0];
  for (size_t k = 0; k < assistants.size(); ++k) turn.history.emplace_back(users[k], assistants[k]);
  turn.query = users.back();
  return turn;
}

std::string build_prompt_from_messages(const std::vector<ChatMessage>& messages) {
  ChatTurn turn = messages_to_turn(messages);
  return build_chat_prompt(turn.history, turn.query);
}

}  // namespace glmpipe
