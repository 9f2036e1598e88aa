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

void SamplingFlags::add_to(CLI::App& app) {
  SamplingParams& v = values_;
  auto add = [&](CLI::Option* o, std::function<void(SamplingParams&)> set) { flags_.emplace_back(o, std::move(set)); };
  add(app.add_flag("--greedy", v.greedy, "greedy decoding (argmax; also --temperature 0)"),
      [this](SamplingParams& p) { p.greedy = values_.greedy; });
  add(app.add_option("--temperature", v.temperature, "sampling temperature (default 0.95; 0 = greedy)"),
      [this](SamplingParams& p) { p.temperature = values_.temperature; p.greedy = p.greedy || p.temperature == 0; });
  add(app.add_option("--top-p", v.top_p, "nucleus sampling mass (default 0.7)"),
      [this](SamplingParams& p) { p.top_p = values_.top_p; });
  add(app.add_option("--top-k", v.top_k, "keep the k most likely tokens (default 50; 0 = all)"),
      [this](SamplingParams& p) { p.top_k = values_.top_k; });
  add(app.add_option("--repetition-penalty", v.repetition_penalty, "HF repetition penalty (default 1.0)"),
      [this](SamplingParams& p) { p.repetition_penalty = values_.repetition_penalty; });
  add(app.add_option("--presence-penalty", v.presence_penalty, "OpenAI presence penalty in [-2, 2] (default 0)"),
      [this](SamplingParams& p) { p.presence_penalty = values_.presence_penalty; });
  add(app.add_option("--frequency-penalty", v.frequency_penalty, "OpenAI frequency penalty in [-2, 2] (default 0)"),
      [this](SamplingParams& p) { p.frequency_penalty = values_.frequency_penalty; });
  add(app.add_option("--seed", v.seed, "sampling seed"), [this](SamplingParams& p) { p.seed = values_.seed; });
  add(app.add_option("--max-new-tokens", v.max_new_tokens, "stop after this many generated tokens"),
      [this](SamplingParams& p) { p.max_new_tokens = values_.max_new_tokens; });
  add(app.add_option("--max-length", v.max_length, "stop when prompt + generated reaches this length"),
      [this](SamplingParams& p) { p.max_length = values_.max_length; });
}

SamplingParams SamplingFlags::over(const SamplingParams& base) const {
  SamplingParams p = base;
  for (const auto& [opt, set] : flags_)
    if (opt->count() > 0) set(p);
  try {
    validate_sampling(p);
  } catch (const SamplingError& e) {
    std::string flag = e.field();
    for (auto& ch : flag)
      if (ch == '_') ch = '-';
    GLMPIPE_FAIL() << "--" << flag << ": " << e.message();
  }
  return p;
}

}  // namespace glmpipe
