// Pieces of `glmpipe batch` (launcher/cmd_batch.cpp) that need no model: JSONL input parsing,
// the crash-safe JSONL appender with resume, and the progress line.
//
// Input, one JSON object per line (blank lines are ignored):
//   {"id": "a1", "ids": [5, 6, 7], "max_new_tokens": 8, "greedy": true}
//   {"id": "a2", "prompt": "text"}                                   (needs a tokenizer)
//   {"id": "a3", "history": [["q", "r"], ...], "prompt": "text"}     (chat prompt, needs a tokenizer)
//   {"id": "a4", "messages": [{"role": "user", "content": "..."}]}   (needs a tokenizer)
// "prompt" alone is the official encode(text); "history" and "messages" are chat prompts in the
// model's chat format (model/chat/chat_format.h). Text prompts stop on the family's stop ids.
// Optional generation keys: the request fields of common/sampling_params.h, with the same names,
// meaning and validator as over HTTP and in the YAML `generation:` defaults (max_tokens or
// max_new_tokens, temperature (0 = greedy), greedy, top_p, top_k, repetition_penalty,
// presence_penalty, frequency_penalty, logit_bias, seed, stop, max_length). Unknown keys are ignored.
// "stop" strings cut the written text before the first one (finish_reason "stop"; needs a tokenizer).
//
// Output: JsonlAppender writes each record as one write() of the whole line + "\n", then fsync, so
// a SIGKILL leaves at most a trailing partial line, which the next open drops (resume).
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "planner/deployment.h"
#include "common/sampling_params.h"

namespace glmpipe {

class ChatFormat;

struct BatchInput {
  int64_t line = 0;               // 1-based line number in the input file
  std::string id;                 // "" when missing or not a string/number
  nlohmann::json id_value;        // the "id" as written (string or integer), for the output
  std::vector<int64_t> ids;       // the prompt, special tokens included
  std::vector<int64_t> stop_ids;  // text prompts: the chat family's; ids: empty (the model's eos)
  SamplingParams params;
  std::string error;              // non-empty: the line is malformed (ids/params are meaningless)
};

// The "id" of a line when it is a JSON object with a string or integer id, else "" (pre-scan).
std::string batch_line_id(const std::string& text);

// Parses one input line. `chat` may be null (then prompt/history/messages lines are errors);
// `vocab_size` > 0 rejects ids outside [0, vocab_size). Never throws on bad input: sets `error`.
BatchInput parse_batch_line(const std::string& text, int64_t line, const SamplingParams& defaults,
                            const ChatFormat* chat, int64_t vocab_size);

// Append-only JSONL file that survives SIGKILL at any point.
class JsonlAppender {
 public:
  // Opens (creating) `path`. An existing file is truncated after its last '\n' (a partial line
  // from a killed run is dropped) and its complete lines are kept in recovered() (lines that are
  // not JSON objects are skipped with a warning). Throws glmpipe::Error naming the path.
  explicit JsonlAppender(const std::string& path, bool fsync_each = true);
  ~JsonlAppender();
  JsonlAppender(const JsonlAppender&) = delete;
  JsonlAppender& operator=(const JsonlAppender&) = delete;

  const std::vector<nlohmann::json>& recovered() const { return recovered_; }
  int64_t dropped_partial_bytes() const { return dropped_; }
  // One write() of dump() + "\n" (retried on a short write), then fsync. Throws on I/O errors.
  void append(const nlohmann::ordered_json& j);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  bool fsync_ = true;
  std::vector<nlohmann::json> recovered_;
  int64_t dropped_ = 0;
};

// "[######....] 12/40  35.2 tok/s  ETA 0:41" (no newline); eta < 0 prints "ETA --".
std::string format_progress(int64_t done, int64_t total, double tokens_per_s, double eta_s, int width = 30);

}  // namespace glmpipe
