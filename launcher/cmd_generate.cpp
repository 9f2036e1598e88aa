// `glmpipe generate --model DIR --ids 5,6,7,1,2 --max-new-tokens N --greedy --print-ids`
// `glmpipe generate --model DIR --prompt "你好"` (needs the model's tokenizer file in DIR or --tokenizer;
// the prompt is the official encode(text), generation stops on the chat family's stop ids)
// With --config FILE.yaml the same runs as a pipeline of MPI processes. Generated ids are printed
// by the first stage; text streams to stdout as tokens arrive.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <iostream>
#include <memory>

#include "common/error.h"
#include "launcher/cli_util.h"
#include "launcher/chat_setup.h"
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
  TokenizerFlags tokenizer;
  bool print_ids = false;
};

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
    const bool have_tok = session_has_tokenizer(*session, o.tokenizer);
    if (!o.ids.empty()) {
      r.input_ids = parse_id_list(o.ids, "--ids");
      GLMPIPE_CHECK(r.params.stop.empty() || have_tok)
          << "stop strings (generation.stop) need a tokenizer: " << session->model_dir()
          << " has no tokenizer.model or ice_text.model (use --tokenizer FILE)";
    } else {
      GLMPIPE_CHECK(have_tok) << "--prompt needs a tokenizer: " << session->model_dir()
                              << " has no tokenizer.model or ice_text.model (use --tokenizer FILE or --ids)";
    }
    if (have_tok && (!o.prompt.empty() || !r.params.stop.empty())) {
      const LoadedChatFormat cf = session_chat_format(*session, o.tokenizer);
      if (!o.prompt.empty()) {
        for (int id : cf.format.text_ids(o.prompt)) r.input_ids.push_back(id);
        const std::string problem = official_prompt_problem(session->config(), r.input_ids);
        GLMPIPE_CHECK(problem.empty()) << "--prompt: " << problem;
        r.stop_ids = cf.format.stop_ids();  // --ids: the model's eos ids (config.json)
      }
      text = std::make_unique<ChoiceText>(cf.format.tokenizer_ptr(), r.params.stop);
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
  sub.add_option("--prompt", o->prompt, "prompt text (tokenized with the model's tokenizer)");
  add_tokenizer_flags(sub, o->tokenizer);
  sub.add_flag("--print-ids", o->print_ids, "print the generated ids comma-separated on one line");
  sub.callback([o] { run_generate(*o); });
});

}  // namespace
}  // namespace glmpipe
