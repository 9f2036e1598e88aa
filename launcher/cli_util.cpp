#include "launcher/cli_util.h"

#include <sstream>

#include "common/error.h"

namespace glmpipe {

std::vector<int64_t> parse_id_list(const std::string& text, const std::string& what) {
  std::vector<int64_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t pos = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &pos);
    } catch (...) {
      pos = 0;
    }
    GLMPIPE_CHECK(pos > 0 && pos == item.size() && v >= 0) << what << ": \"" << item << "\" is not a token id (expected e.g. 5,6,7)";
    ids.push_back(v);
  }
  GLMPIPE_CHECK(!ids.empty()) << what << ": no token ids given";
  return ids;
}

std::string join_ids(const std::vector<int64_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

void add_sampling_options(CLI::App& app, SamplingParams& p) {
  app.add_flag("--greedy", p.greedy, "greedy decoding (argmax)");
  app.add_option("--temperature", p.temperature, "sampling temperature (default 0.95)");
  app.add_option("--top-p", p.top_p, "nucleus sampling mass (default 0.7)");
  app.add_option("--top-k", p.top_k, "keep the k most likely tokens (default 50; 0 = all)");
  app.add_option("--repetition-penalty", p.repetition_penalty, "HF repetition penalty (default 1.0)");
  app.add_option("--seed", p.seed, "sampling seed");
  app.add_option("--max-new-tokens", p.max_new_tokens, "stop after this many generated tokens");
  app.add_option("--max-length", p.max_length, "stop when prompt + generated reaches this length");
}

}  // namespace glmpipe
