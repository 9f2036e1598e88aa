#include "model/chat/tool_prompt.h"

#include "common/error.h"

namespace glmpipe {

using ojson = nlohmann::ordered_json;

const char* const kChatGLM3ToolSystem =
    "Answer the following questions as best as you can. You have access to the following tools:";

namespace {

const char* const kGlm4ToolHeader =
    "\n你是一个名为 ChatGLM 的人工智能助手。你是基于智谱AI训练的语言模型 GLM-4 模型开发的，你的任务是针对用户的问题和要求提供适当的答复和支持。"
    "\n\n# 可用工具";
const char* const kGlm4FunctionSuffix = "\n在调用上述函数时，请使用 Json 格式表示调用的参数。";
const char* const kGlm4Python =
    "\n\n## python\n\n当你向 `python` 发送包含 Python 代码的消息时，该代码将会在一个有状态的 Jupyter notebook 环境中执行。"
    "\n`python` 返回代码执行的输出，或在执行 60 秒后返回超时。\n`/mnt/data` 将会持久化存储你的文件。在此会话中，`python` "
    "无法访问互联网。不要使用 `python` 进行任何网络请求或者在线 API 调用，这些在线内容的访问将不会成功。";
const char* const kGlm4Browser =
    "\n\n## simple_browser\n\n你可以使用 `simple_browser` 工具。该工具支持以下函数：\n`search(query: str, recency_days: int)`："
    "使用搜索引擎进行查询并显示结果，可以使用 `recency_days` 参数控制搜索内容的时效性。\n`mclick(ids: list[int])`：获取一系列指定 id "
    "的页面内容。每次调用时，须选择3-10个页面。选择多个角度的页面，同时尽可能选择可信任的信息来源。考虑到部分页面是无法加载的，"
    "你也可以多打开一些可能有用的页面而不用担心内容过多。\n`open_url(url: str)`：打开指定的 URL。\n\n使用 `【{引用 id}†{引用文本}】` "
    "来引用内容。\n\n操作步骤：1. 使用 `search` 来获得信息列表; 2. 使用 `mclick` 来获取指定 ID 页面的内容; 3. "
    "根据获得的内容进行回复。在回复中应当引用信息来源。\n 如果用户提供了 URL，也可以用 `open_url` 直接打开页面。\n"
    "如果初次搜索结果没有找到合适的信息，也可以再次使用 `search` 进行搜索。";
const char* const kGlm4Cogview =
    "\n\n## cogview\n\n如果用户的请求中包含了对图像的描述，你可以使用 `cogview` 来生成图像并展示给用户。你需要向 `cogview` "
    "发送图像描述，规则：\n- 发送给 `cogview` 的消息必须使用英语。用户的中文描述必须完全翻译为英语。\n- "
    "应当尽可能详细地描述图像生成的需求，需求描述约 100 英文单词。\n- 保持用户原始描述的意图。不要虚构内容或者没见过的人物。\n- "
    "如无特殊说明，所在地为中国，持有中国立场并遵循中国社会主义价值观。";

// The function object of a tool: OpenAI {"type": "function", "function": {...}} or a bare one.
const ojson* function_of(const ojson& tool) {
  if (!tool.is_object()) return nullptr;
  if (tool.contains("function") && tool["function"].is_object()) return &tool["function"];
  if (!tool.contains("type") && tool.contains("name")) return &tool;
  return nullptr;
}

void check_tools(const ojson& tools) {
  GLMPIPE_CHECK(tools.is_array()) << "tools: expected a list";
  for (size_t i = 0; i < tools.size(); ++i) {
    const ojson* fn = function_of(tools[i]);
    const bool builtin = tools[i].is_object() && tools[i].contains("type") && tools[i]["type"].is_string() &&
                         tools[i]["type"] != "function";
    GLMPIPE_CHECK(builtin || (fn && fn->contains("name") && (*fn)["name"].is_string()))
        << "tools[" << i << "]: expected {\"type\": \"function\", \"function\": {\"name\": …}}";
  }
}

}  // namespace

std::string py_json_dumps_indent4(const ojson& v) {
  return v.dump(4, ' ', /*ensure_ascii=*/false, nlohmann::detail::error_handler_t::replace);
}

std::string chatglm3_tool_system_content(const std::string& system_content, const ojson& tools) {
  check_tools(tools);
  ojson unwrapped = ojson::array();
  for (const auto& t : tools) {
    const ojson* fn = function_of(t);
    unwrapped.push_back(fn ? *fn : t);
  }
  return system_content + "\n" + py_json_dumps_indent4(unwrapped);
}

std::string glm4_tool_system_text(const ojson& tools) {
  check_tools(tools);
  std::string out = kGlm4ToolHeader;
  for (const auto& t : tools) {
    const std::string type = t.contains("type") && t["type"].is_string() ? t["type"].get<std::string>() : "function";
    if (type == "function") {
      const ojson& fn = *function_of(t);
      out += "\n\n## " + fn["name"].get<std::string>() + "\n\n" + py_json_dumps_indent4(fn) + kGlm4FunctionSuffix;
    } else if (type == "python") {
      out += kGlm4Python;
    } else if (type == "simple_browser") {
      out += kGlm4Browser;
    } else if (type == "cogview") {
      out += kGlm4Cogview;
    }  // the template writes nothing for other types
  }
  return out;
}

std::vector<std::string> tool_names(const ojson& tools) {
  std::vector<std::string> names;
  if (!tools.is_array()) return names;
  for (const auto& t : tools) {
    const ojson* fn = function_of(t);
    if (fn && fn->contains("name") && (*fn)["name"].is_string()) names.push_back((*fn)["name"]);
    else if (t.is_object() && t.contains("type") && t["type"].is_string()) names.push_back(t["type"]);
  }
  return names;
}

}  // namespace glmpipe
