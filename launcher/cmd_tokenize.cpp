// `glmpipe tokenize --tokenizer ice_text.model --text TEXT [--no-special] [--decode 1,2,3]`
// CONTRACT: with --text, stdout's first line is the ids, comma-separated, special tokens included
// (e.g. "5,74874,130001,130004"). With --decode, the decoded text follows on its own line(s).
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "launcher/command.h"
#include "model/tokenizer.h"

namespace {

struct TokenizeOptions {
  std::string tokenizer;
  std::string text;
  std::string decode;
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

void run_tokenize(const TokenizeOptions& opt, bool have_text) {
  GLMPIPE_CHECK(have_text || !opt.decode.empty()) << "tokenize: give --text and/or --decode";
  auto tok = glmpipe::ChatGLMTokenizer::load(opt.tokenizer);
  if (have_text) {
    auto ids = tok.encode(opt.text, !opt.no_special);
    for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? "," : "") << ids[i];
    std::cout << "\n";
  }
  if (!opt.decode.empty()) std::cout << tok.decode(parse_ids(opt.decode)) << "\n";
}

glmpipe::CommandRegistrar reg("tokenize", "Encode text / decode ids with the ChatGLM-6B tokenizer",
                              [](CLI::App& sub) {
  auto opt = std::make_shared<TokenizeOptions>();
  sub.add_option("--tokenizer", opt->tokenizer, "ice_text.model (SentencePiece)")->required();
  auto* text = sub.add_option("--text", opt->text, "text to encode; prints ids comma-separated");
  sub.add_option("--decode", opt->decode, "comma-separated ids to decode; prints the text");
  sub.add_flag("--no-special", opt->no_special, "do not append [gMASK] <sop>");
  sub.callback([opt, text] { run_tokenize(*opt, text->count() > 0); });
});

}  // namespace
