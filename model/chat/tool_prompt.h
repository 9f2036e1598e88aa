// How a `tools` list becomes the system prompt of ChatGLM3 and GLM-4 (chatglm2-family.md §2).
//   ChatGLM3 (build_chat_input): the system content + "\n" + json.dumps(tools, indent=4,
//     ensure_ascii=False); OpenAI {"type": "function", "function": {...}} entries are unwrapped to
//     the function object, the form ChatGLM3's tool examples use; default content
//     kChatGLM3ToolSystem (its README / openai_api_demo text).
//   GLM-4 (glm-4-9b-chat chat_template): "\n你是一个名为 ChatGLM 的人工智能助手。…\n\n# 可用工具" then,
//     per tool, "\n\n## {name}\n\n{function | tojson(indent=4)}\n在调用上述函数时，请使用 Json 格式表示调用的参数。"
//     (the built-in python / simple_browser / cogview tools have fixed texts).
// JSON is written as Python's json.dumps(indent=4, ensure_ascii=False): keys in the given order.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace glmpipe {

extern const char* const kChatGLM3ToolSystem;

// Python json.dumps(v, indent=4, ensure_ascii=False); invalid UTF-8 becomes U+FFFD.
std::string py_json_dumps_indent4(const nlohmann::ordered_json& v);

std::string chatglm3_tool_system_content(const std::string& system_content, const nlohmann::ordered_json& tools);
// The text after <|system|> of GLM-4's tools block (starts with "\n").
std::string glm4_tool_system_text(const nlohmann::ordered_json& tools);

// The function names a tools list offers (OpenAI form or bare function objects).
std::vector<std::string> tool_names(const nlohmann::ordered_json& tools);

}  // namespace glmpipe
