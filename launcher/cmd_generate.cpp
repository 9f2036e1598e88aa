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
#include "launcher/openai_response.h"
#include "launcher/session.h"
#include "model/tokenizer.h"

namespace glmpipe {
namespace {

struct GenerateOptions {
  SessionOptions session;
  SamplingFlags sampling;
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
  std::unique_ptr<ChoiceText> text;  // the generated text (stop strings), with a tokenizer
  bool print_text = false, stopped = false;
  Scheduler* sched = nullptr;
  // Token events arrive on the stage loop, outside the scheduler's lock (cancel() may be called).
  auto on_token = [&](const TokenEvent& ev) {
    if (ev.finish_reason == "error") error = ev.error;
    if (ev.token < 0 || stopped) return;
    generated.push_back(ev.token);
    if (!text || (ev.finished && ev.finish_reason == "stop")) return;  // <eop> is not text
    if (text->push(static_cast<int>(ev.token))) {
      stopped = true;
      if (!ev.finished) sched->cancel(ev.seq_id);
    }
    if (print_text) std::cout << text->take_stable() << std::flush;
  };
  auto session = Session::create(o.session, on_token);
  if (!session) return;
  if (session->ctx().is_first_stage()) {
    Request r;
    r.id = "generate";
    r.params = o.sampling.over(session->deployment().generation);
    const std::string tok_path = find_tokenizer(o.tokenizer, session->model_dir());
    if (!o.ids.empty()) {
      r.input_ids = parse_id_list(o.ids, "--ids");
      GLMPIPE_CHECK(r.params.stop.empty() || !tok_path.empty())
          << "stop strings (generation.stop) need a tokenizer: " << session->model_dir()
          << " has no ice_text.model (use --tokenizer FILE)";
    } else {
      GLMPIPE_CHECK(!tok_path.empty()) << "--prompt needs a tokenizer: " << session->model_dir()
                                       << " has no ice_text.model (use --tokenizer FILE or --ids)";
    }
    if (!tok_path.empty() && (!o.prompt.empty() || !r.params.stop.empty())) {
      auto tok = ChatGLMTokenizer::load(tok_path);
      if (!o.prompt.empty())
        for (int id : tok.encode(o.prompt)) r.input_ids.push_back(id);
      text = std::make_unique<ChoiceText>(tok, r.params.stop);
      print_text = !o.prompt.empty() && !o.print_ids;
    }
    sched = &session->runner().scheduler();
    sched->submit(std::move(r));
    sched->request_shutdown();
  }
  session->run();
  GLMPIPE_CHECK(error.empty()) << "generate: " << error;
  if (session->ctx().is_first_stage()) {
    if (text) text->finish();
    if (print_text) std::cout << text->take_stable() << std::endl;
    if (o.print_ids || !print_text) std::cout << join_ids(generated) << std::endl;
  }
}

CommandRegistrar reg("generate", "Generate tokens from ids or a prompt (single process or pipeline)", [](CLI::App& sub) {
  auto o = std::make_shared<GenerateOptions>();
  add_session_options(sub, o->session);
  o->sampling.add_to(sub);
  sub.add_option("--ids", o->ids, "comma-separated prompt token ids");
  sub.add_option("--prompt", o->prompt, "prompt text (tokenized with ice_text.model)");
  sub.add_option("--tokenizer", o->tokenizer, "ice_text.model path (default: MODEL_DIR/ice_text.model)");
  sub.add_flag("--print-ids", o->print_ids, "print the generated ids comma-separated on one line");
  sub.callback([o] { run_generate(*o); });
});

}  // namespace
}  // namespace glmpipe
