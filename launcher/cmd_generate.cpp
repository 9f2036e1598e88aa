// `glmpipe generate --model DIR --ids 5,6,7,1,2 --max-new-tokens N --greedy --print-ids`
// `glmpipe generate --model DIR --prompt "你好"` (needs ice_text.model in DIR or --tokenizer)
// With --config FILE.yaml the same runs as a pipeline of MPI processes. Generated ids are printed
// by the first stage; text streams to stdout as tokens arrive.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <iostream>
#include <memory>

#include "common/error.h"
#include "launcher/cli_util.h"
#include "launcher/command.h"
#include "launcher/session.h"
#include "model/tokenizer.h"

namespace glmpipe {
namespace {

struct GenerateOptions {
  SessionOptions session;
  SamplingParams sampling;
  std::string ids;
  std::string prompt;
  std::string tokenizer;
  bool print_ids = false;
};

std::string find_tokenizer(const std::string& flag, const std::string& model_dir) {
  if (!flag.empty()) return flag;
  std::string p = model_dir + "/ice_text.model";
  return access(p.c_str(), R_OK) == 0 ? p : "";
}

void run_generate(GenerateOptions o) {
  GLMPIPE_CHECK(o.ids.empty() != o.prompt.empty()) << "give exactly one of --ids or --prompt";
  std::vector<int64_t> generated;
  std::string error;
  std::unique_ptr<StreamDecoder> stream;
  auto on_token = [&](const TokenEvent& ev) {
    if (ev.finish_reason == "error") error = ev.error;
    if (ev.token < 0) return;
    generated.push_back(ev.token);
    if (stream) std::cout << stream->push(static_cast<int>(ev.token)) << std::flush;
  };
  auto session = Session::create(o.session, on_token);
  if (!session) return;
  if (session->ctx().is_first_stage()) {
    Request r;
    r.id = "generate";
    r.params = o.sampling;
    if (!o.ids.empty()) {
      r.input_ids = parse_id_list(o.ids, "--ids");
    } else {
      const std::string tok_path = find_tokenizer(o.tokenizer, session->model_dir());
      GLMPIPE_CHECK(!tok_path.empty()) << "--prompt needs a tokenizer: " << session->model_dir()
                                       << " has no ice_text.model (use --tokenizer FILE or --ids)";
      auto tok = ChatGLMTokenizer::load(tok_path);
      for (int id : tok.encode(o.prompt)) r.input_ids.push_back(id);
      if (!o.print_ids) stream = std::make_unique<StreamDecoder>(tok);
    }
    session->runner().scheduler().submit(std::move(r));
    session->runner().scheduler().request_shutdown();
  }
  session->run();
  GLMPIPE_CHECK(error.empty()) << "generate: " << error;
  if (session->ctx().is_first_stage()) {
    if (stream) std::cout << stream->flush() << std::endl;
    if (o.print_ids || !stream) std::cout << join_ids(generated) << std::endl;
  }
}

CommandRegistrar reg("generate", "Generate tokens from ids or a prompt (single process or pipeline)", [](CLI::App& sub) {
  auto o = std::make_shared<GenerateOptions>();
  add_session_options(sub, o->session);
  add_sampling_options(sub, o->sampling);
  sub.add_option("--ids", o->ids, "comma-separated prompt token ids");
  sub.add_option("--prompt", o->prompt, "prompt text (tokenized with ice_text.model)");
  sub.add_option("--tokenizer", o->tokenizer, "ice_text.model path (default: MODEL_DIR/ice_text.model)");
  sub.add_flag("--print-ids", o->print_ids, "print the generated ids comma-separated on one line");
  sub.callback([o] { run_generate(*o); });
});

}  // namespace
}  // namespace glmpipe
