// The request side of the OpenAI-compatible API (`glmpipe serve`): JSON request bodies → what the
// scheduler runs, and the OpenAI error body every 4xx/5xx answer carries. No HTTP here: the
// transport (cpp-httplib, connection handling) lives in launcher/http_server.cpp.
//
// Every field OpenAI defines for /v1/chat/completions and /v1/completions is either honoured or
// refused with a 400 whose `param` names it; unknown fields are ignored, as OpenAI does. The
// sampling fields are read by the project's one validator (common/sampling_params.h), so they mean
// the same here as in `batch` lines and the YAML `generation:` defaults. Extensions accepted on
// both endpoints: top_k, repetition_penalty, greedy, max_length.
//
// Chat prompts are the model's chat format (model/chat/chat_format.h), built from the same JSON as
// `glmpipe tokenize --chat` reads (model/chat/chat_json.h). ChatGLM3 and GLM-4: `tools` become the
// family's tool system prompt; tool_choice "auto" (default) and "none" (tools left out of the
// prompt) are honoured, "required" and a named function are refused (no constrained decoding);
// assistant `tool_calls` and "tool" messages replay a call and its result.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "common/sampling_params.h"
#include "model/chat/chat_format.h"

namespace glmpipe {

// An OpenAI-style error: {"error": {"message", "type", "param", "code"}} with an HTTP status.
struct ApiError {
  int status = 400;
  std::string message;
  std::string param;  // "" → null
  std::string code;   // "" → null
  std::string type = "invalid_request_error";
};

nlohmann::json error_body(const ApiError& e);
// json::dump that never throws on invalid UTF-8 (replaced by U+FFFD).
std::string dump_json(const nlohmann::json& j);

// What a request is checked against.
struct ApiContext {
  // The tokenizer and chat family: chat prompts (tools included), completions' encode, stop ids;
  // tool calling when the family has a tool-call format (ChatGLM3, GLM-4).
  const ChatFormat* chat = nullptr;
  // The model's config.json: text prompts are checked as the official code does
  // (official_prompt_problem); null: no check.
  const ModelConfig* model = nullptr;
  std::vector<std::string> model_names;  // the served names (aliases); [0] is the primary one
  SamplingParams defaults;               // for fields a request leaves out
  int64_t vocab_size = 0;                // bounds logit_bias ids
};

enum class Endpoint { kChat, kCompletions };

struct ApiPrompt {
  std::vector<int64_t> ids;  // special tokens included
  std::string text;          // completions: the prompt as given (for echo)
};

// A validated request: one sequence per (prompt, choice) pair, choice index = prompt * n + i.
struct ApiRequest {
  Endpoint endpoint = Endpoint::kChat;
  std::string model;  // the name the response reports (the one asked for, else the primary)
  std::vector<ApiPrompt> prompts;
  SamplingParams params;  // stop strings and top_logprobs included (-1: no logprobs)
  int64_t n = 1;          // choices per prompt; choice i draws with seed params.seed + i
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a final chunk with usage
  bool echo = false;           // completions: the prompt text before the completion
  bool tools_offered = false;  // chat: `tools` went into the prompt (tool_choice not "none")
  std::vector<int64_t> stop_ids;  // the chat family's stop ids (GLM-4: 3)
};

// Throw ApiError naming the offending field.
ApiRequest parse_chat_request(const std::string& body, const ApiContext& ctx);
ApiRequest parse_completion_request(const std::string& body, const ApiContext& ctx);

}  // namespace glmpipe
