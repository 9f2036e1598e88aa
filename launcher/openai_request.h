// The request side of the OpenAI-compatible API (`glmpipe serve`): JSON request bodies → what the
// scheduler runs, and the OpenAI error body every 4xx/5xx answer carries. No HTTP here: the
// transport (cpp-httplib, connection handling) lives in launcher/http_server.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "model/tokenizer.h"
#include "stage/sampler.h"
#include "stage/scheduler.h"

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
  const ChatGLMTokenizer* tokenizer = nullptr;
  std::string model_id;     // the served model name
  SamplingParams defaults;  // for fields a request leaves out
};

// A validated chat-completions request.
struct ChatRequest {
  Request request;  // prompt ids and sampling parameters (id left empty)
  bool stream = false;
};

// Validates an OpenAI chat request (throws ApiError naming the offending field).
ChatRequest parse_chat_request(const std::string& body, const ApiContext& ctx);

}  // namespace glmpipe
