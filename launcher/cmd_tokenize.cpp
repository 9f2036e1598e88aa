// `glmpipe tokenize --tokenizer FILE (--text T | --chat FILE.json) [--family F] [--no-special-tokens] [--decode 1,2,3]`
// CONTRACT: stdout's first line is the ids, comma-separated:
//   --text T:        the official tokenizer's encode(T) (special tokens included; with
//                    --no-special-tokens, encode(T, add_special_tokens=False)), e.g. "5,74874,130001,130004";
//   --chat F.json:   the whole chat prompt of {"messages": [...], "tools": [...]}, generation prompt
//                    included, as the family's official chat builder makes it.
// With --decode, the decoded text follows on its own line(s). The kind of tokenizer file is
// detected from its content; the family defaults from it (chatglm3 for the ChatGLM2/3 file) and
// is reported on stderr with the tokenizer kind.
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "launcher/command.h"
#include "model/chat/chat_format.h"
#include "model/chat/chat_json.h"
#include "model/tokenizer/tokenizer_loader.h"

namespace {

struct TokenizeOptions {
  std::string tokenizer;
  std::string text;
  std::string chat;
  std::string decode;
  std::string family;
  bool no_special = false;
};

std::vector<int> parse_ids(const std::string& s) {
  std::vector<int> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto b = item.find_first_not_of(" \t");
    if (b == std::string::npos) continue;
    auto e = item.find_last_not_of(" \t");
    std::string t = item.substr(b, e - b + 1);
    size_t used = 0;
    int id = -1;
    try {
      id = std::stoi(t, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    GLMPIPE_CHECK(used == t.size()) << "--decode: '" << t << "' is not an integer token id";
    ids.push_back(id);
  }
  return ids;
}

void print_ids(const std::vector<int>& ids) {
  for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? "," : "") << ids[i];
  std::cout << "\n";
}

nlohmann::ordered_json read_json_file(const std::string& path) {
  std::ifstream f(path);
  GLMPIPE_CHECK(f.good()) << "--chat: " << path << " cannot be read";
  auto j = nlohmann::ordered_json::parse(f, nullptr, /*allow_exceptions=*/false);
  GLMPIPE_CHECK(!j.is_discarded()) << "--chat: " << path << " is not valid JSON";
  return j;
}

void run_tokenize(const TokenizeOptions& opt, bool have_text) {
  using namespace glmpipe;
  GLMPIPE_CHECK(have_text || !opt.chat.empty() || !opt.decode.empty())
      << "tokenize: give --text, --chat and/or --decode";
  GLMPIPE_CHECK(!(have_text && !opt.chat.empty())) << "tokenize: give --text or --chat, not both";
  std::optional<ChatFamily> family;
  if (!opt.family.empty()) family = parse_chat_family(opt.family, "--family");
  const LoadedChatFormat cf = load_chat_format("", opt.tokenizer, family);
  const Tokenizer& tok = cf.format.tokenizer();
  std::cerr << "tokenizer: " << tokenizer_kind_name(tok.kind()) << "; family "
            << chat_family_name(cf.format.family()) << " (" << cf.family_reason << ")\n";
  if (have_text) print_ids(tok.encode(opt.text, !opt.no_special));
  if (!opt.chat.empty()) {
    const ChatInput in = chat_input_from_json(read_json_file(opt.chat), opt.chat);
    print_ids(cf.format.prompt_ids(in.messages, in.tools));
  }
  if (!opt.decode.empty()) std::cout << tok.decode(parse_ids(opt.decode)) << "\n";
}

glmpipe::CommandRegistrar reg("tokenize", "Encode text or a chat / decode ids with a ChatGLM-family tokenizer",
                              [](CLI::App& sub) {
  auto opt = std::make_shared<TokenizeOptions>();
  sub.add_option("--tokenizer", opt->tokenizer,
                 "ice_text.model (ChatGLM-6B), tokenizer.model (ChatGLM2/3 sentencepiece or GLM-4 tiktoken)")
      ->required();
  auto* text = sub.add_option("--text", opt->text, "text to encode; prints ids comma-separated");
  sub.add_option("--chat", opt->chat, "OpenAI-style {\"messages\": [...], \"tools\": [...]} file; prints the prompt ids");
  sub.add_option("--family", opt->family, "chatglm | chatglm2 | chatglm3 | glm4 (default: from the tokenizer file)");
  sub.add_option("--decode", opt->decode, "comma-separated ids to decode; prints the text");
  sub.add_flag("--no-special-tokens,--no-special", opt->no_special,
               "encode(T, add_special_tokens=False): no [gMASK]/<sop> prefix or suffix");
  sub.callback([opt, text] { run_tokenize(*opt, text->count() > 0); });
});

}  // namespace
