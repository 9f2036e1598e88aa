// The HTTP-body harness (see fuzz_targets.h): an OpenAI request body through glmpipe's own request
// parsing (launcher/openai_request.cpp: JSON body -> validated ApiRequest), both endpoints. An
// ApiError (the 4xx answer) or glmpipe::Error is the expected failure; cpp-httplib's own HTTP parsing
// is not ours to fuzz. The fuzz build links tests/fuzz/tokenizer_stub.cpp (bytes as ids); the
// ordinary build, replaying the corpus, the real tokenizer on tests/data/tiny_chatglm.model.
#include <memory>
#include <string>

#include "common/error.h"
#include "launcher/openai_request.h"
#include "model/tokenizer.h"
#include "tests/fuzz/fuzz_targets.h"

namespace glmpipe::fuzz {

bool chat_request(const uint8_t* data, size_t size) {
  static const ChatGLMTokenizer tok =
      ChatGLMTokenizer::load(std::string(GLMPIPE_FUZZ_SOURCE_DIR) + "/tests/data/tiny_chatglm.model");
  static const ChatFormat chat(std::make_shared<ChatGLMTokenizer>(tok), ChatFamily::kChatGLM);
  static const ApiContext ctx = [] {
    ApiContext c;
    c.chat = &chat;
    c.model_names = {"tiny", "alias"};
    c.vocab_size = tok.vocab_size();
    return c;
  }();
  const std::string body(reinterpret_cast<const char*>(data), size);
  bool ok = false;  // accepted by either endpoint
  for (auto parse : {parse_chat_request, parse_completion_request}) {
    try {
      ApiRequest r = parse(body, ctx);
      size_t ids = 0;
      for (const auto& p : r.prompts) ids += p.ids.size() + p.text.size();
      volatile size_t sink = ids + r.model.size();
      (void)sink;
      ok = true;
    } catch (const ApiError&) {
    } catch (const Error&) {
    }
  }
  return ok;
}

}  // namespace glmpipe::fuzz
