#include "launcher/batch_job.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "common/error.h"
#include "model/chat_prompt.h"
#include "model/chat/chat_format.h"

namespace glmpipe {

using json = nlohmann::json;

namespace {

std::string id_of(const json& j) {
  if (!j.is_object() || !j.contains("id")) return "";
  const json& v = j["id"];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return v.dump();
  return "";
}

// The sampling fields of a line: the request validator (common/sampling_params.h); "" when fine.
std::string read_params(const json& j, SamplingParams& p, int64_t vocab_size) {
  try {
    read_sampling_fields(j, p, vocab_size);
  } catch (const SamplingError& e) {
    return "\"" + e.field() + "\": " + e.message();
  }
  if (j.contains("n") && !(j["n"].is_number_integer() && j["n"].get<int64_t>() == 1))
    return "\"n\": one choice per line (give each choice its own line and seed)";
  if (j.contains("stream") && j["stream"] == true) return "\"stream\": batch results are written whole";
  return "";
}

std::string read_string(const json& v, const std::string& what, std::string& out) {
  if (!v.is_string()) return what + " must be a string";
  out = v.get<std::string>();
  return "";
}

// Chat messages from "prompt" + "history" or "messages"; "" error when fine. `plain` is set for a
// lone "prompt" (a text prompt, not a chat).
std::string prompt_messages(const json& j, std::vector<ChatMessage>& msgs, bool& plain) {
  const bool has_msgs = j.contains("messages"), has_prompt = j.contains("prompt"), has_hist = j.contains("history");
  plain = false;
  if (has_msgs) {
    if (has_prompt || has_hist) return "give either \"messages\" or \"prompt\"/\"history\", not both";
    const json& m = j["messages"];
    if (!m.is_array()) return "\"messages\" must be an array of {\"role\", \"content\"} objects";
    for (const auto& x : m) {
      if (!x.is_object() || !x.contains("role") || !x.contains("content") || !x["role"].is_string() ||
          !x["content"].is_string())
        return "every entry of \"messages\" must be {\"role\": string, \"content\": string}";
      msgs.push_back({x["role"].get<std::string>(), x["content"].get<std::string>()});
    }
    return "";
  }
  if (!has_prompt) return "\"history\" needs a \"prompt\"";
  std::string query;
  if (auto e = read_string(j["prompt"], "\"prompt\"", query); !e.empty()) return e;
  if (has_hist) {
    const json& h = j["history"];
    if (!h.is_array()) return "\"history\" must be an array of [query, response] pairs";
    for (const auto& round : h) {
      if (!round.is_array() || round.size() != 2 || !round[0].is_string() || !round[1].is_string())
        return "\"history\" must be an array of [query, response] string pairs";
      msgs.push_back({"user", round[0].get<std::string>()});
      msgs.push_back({"assistant", round[1].get<std::string>()});
    }
  }
  plain = !has_hist;
  msgs.push_back({"user", query});
  return "";
}

std::string read_prompt(const json& j, const ChatFormat* chat, int64_t vocab_size, std::vector<int64_t>& ids,
                        std::vector<int64_t>& stop_ids) {
  const bool has_ids = j.contains("ids");
  const bool has_text = j.contains("prompt") || j.contains("messages") || j.contains("history");
  if (has_ids && has_text) return "give either \"ids\" or \"prompt\"/\"messages\", not both";
  if (!has_ids && !has_text) return "no \"ids\", \"prompt\" or \"messages\"";
  if (has_ids) {
    const json& a = j["ids"];
    if (!a.is_array() || a.empty()) return "\"ids\" must be a non-empty array of token ids";
    for (const auto& v : a) {
      if (!v.is_number_integer()) return "\"ids\" must contain integers only (got " + v.dump() + ")";
      if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
        return "token id " + v.dump() + " outside the vocabulary";
      const int64_t t = v.get<int64_t>();
      if (t < 0 || (vocab_size > 0 && t >= vocab_size))
        return "token id " + std::to_string(t) + " outside the vocabulary [0, " + std::to_string(vocab_size) + ")";
      ids.push_back(t);
    }
    return "";
  }
  std::vector<ChatMessage> msgs;
  bool plain = false;
  if (auto e = prompt_messages(j, msgs, plain); !e.empty()) return e;
  if (!chat) return "a text prompt needs a tokenizer (MODEL_DIR/tokenizer.model, ice_text.model or --tokenizer), or give \"ids\"";
  std::vector<int> prompt;
  try {
    prompt = plain ? chat->text_ids(msgs.back().content) : chat->prompt_ids(msgs);
  } catch (const Error& e) {
    return std::string(j.contains("messages") ? "\"messages\": " : "\"history\": ") + e.what();
  }
  stop_ids = chat->stop_ids();
  for (int t : prompt) {
    if (t < 0 || (vocab_size > 0 && t >= vocab_size))
      return "the tokenizer produced id " + std::to_string(t) + " outside the model's vocabulary [0, " +
             std::to_string(vocab_size) + ")";
    ids.push_back(t);
  }
  return "";
}

}  // namespace

std::string batch_line_id(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? "" : id_of(j);
}

BatchInput parse_batch_line(const std::string& text, int64_t line, const SamplingParams& defaults,
                            const ChatFormat* chat, int64_t vocab_size) {
  BatchInput in;
  in.line = line;
  in.params = defaults;
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    in.error = "not valid JSON";
    return in;
  }
  if (!j.is_object()) {
    in.error = "not a JSON object";
    return in;
  }
  in.id = id_of(j);
  if (!in.id.empty()) in.id_value = j["id"];
  if (!j.contains("id")) {
    in.error = "missing \"id\"";
    return in;
  }
  if (in.id.empty()) {
    in.error = "\"id\" must be a non-empty string or an integer";
    return in;
  }
  if (auto e = read_params(j, in.params, vocab_size); !e.empty()) {
    in.error = e;
    return in;
  }
  try {
    in.error = read_prompt(j, chat, vocab_size, in.ids, in.stop_ids);
  } catch (const std::exception& e) {  // tokenizer failures
    in.error = e.what();
  }
  if (!in.error.empty()) in.ids.clear(), in.stop_ids.clear();
  return in;
}

JsonlAppender::JsonlAppender(const std::string& path, bool fsync_each) : path_(path), fsync_(fsync_each) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  GLMPIPE_CHECK(fd_ >= 0) << "cannot open " << path << " for appending: " << std::strerror(errno);
  struct stat st;
  GLMPIPE_CHECK(::fstat(fd_, &st) == 0) << "cannot stat " << path << ": " << std::strerror(errno);
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::pread(fd_, data.data() + got, data.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    GLMPIPE_CHECK(n >= 0) << "cannot read " << path << ": " << std::strerror(errno);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  data.resize(got);
  const size_t keep = data.rfind('\n') == std::string::npos ? 0 : data.rfind('\n') + 1;
  if (keep < data.size()) {
    dropped_ = static_cast<int64_t>(data.size() - keep);
    spdlog::warn("{}: dropping a partial last line ({} bytes) left by an interrupted run", path, dropped_);
    GLMPIPE_CHECK(::ftruncate(fd_, static_cast<off_t>(keep)) == 0)
        << "cannot truncate " << path << ": " << std::strerror(errno);
    ::fsync(fd_);
  }
  size_t pos = 0;
  int64_t line = 0;
  while (pos < keep) {
    const size_t nl = data.find('\n', pos);
    const std::string s = data.substr(pos, nl - pos);
    pos = nl + 1;
    ++line;
    if (s.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j = json::parse(s, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      spdlog::warn("{}:{}: not a JSON object, ignored", path, line);
      continue;
    }
    recovered_.push_back(std::move(j));
  }
}

JsonlAppender::~JsonlAppender() {
  if (fd_ >= 0) ::close(fd_);
}

void JsonlAppender::append(const nlohmann::ordered_json& j) {
  const std::string s = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd_, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    GLMPIPE_CHECK(n > 0) << "cannot write to " << path_ << ": " << std::strerror(errno);
    off += static_cast<size_t>(n);
  }
  if (fsync_) ::fdatasync(fd_);
}

std::string format_progress(int64_t done, int64_t total, double tokens_per_s, double eta_s, int width) {
  const double frac = total > 0 ? std::min(1.0, double(done) / double(total)) : 1.0;
  const int filled = static_cast<int>(std::lround(frac * width));
  std::string bar = "[" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
  char buf[160];
  if (eta_s >= 0 && std::isfinite(eta_s)) {
    const int64_t e = static_cast<int64_t>(eta_s + 0.5);
    std::snprintf(buf, sizeof(buf), " %lld/%lld  %.1f tok/s  ETA %lld:%02lld", (long long)done, (long long)total,
                  tokens_per_s, (long long)(e / 60), (long long)(e % 60));
  } else {
    std::snprintf(buf, sizeof(buf), " %lld/%lld  %.1f tok/s  ETA --", (long long)done, (long long)total, tokens_per_s);
  }
  return bar + buf;
}

}  // namespace glmpipe
