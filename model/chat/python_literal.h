// ChatGLM3 writes a tool call as Python: ```python\ntool_call(seed=42, range=(0, 100))\n```
// and HF's process_response eval()s it into kwargs. We never eval: a small parser reads the call's
// keyword arguments as Python literals (str, int, float, True/False/None, list, tuple, dict) into
// JSON (tuples become arrays). The reverse writes an OpenAI call's JSON arguments back as that
// Python text, for assistant turns replayed in a prompt.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace glmpipe {

// "tool_call(a=1, b='x')" (surrounding whitespace allowed) → {"a": 1, "b": "x"}, keys in order.
// Throws glmpipe::Error saying where the text stops being a literal call.
nlohmann::ordered_json parse_python_kwargs_call(const std::string& code, const std::string& callee = "tool_call");

// {"a": 1, "b": "x"} → "tool_call(a=1, b='x')" (Python repr of each value).
std::string python_kwargs_call(const nlohmann::ordered_json& args, const std::string& callee = "tool_call");

}  // namespace glmpipe
