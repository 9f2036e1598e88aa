// `glmpipe forward --model DIR --ids 0,1,2,3,4 --prefill 3 --out FILE.npy [--config C.yaml]`
// Runs the first --prefill ids as one call, then feeds the rest one at a time through the KV cache,
// and writes float32 logits [len(ids), vocab] as .npy (written by the last stage).
#include <iostream>
#include <memory>

#include "common/error.h"
#include "common/npy.h"
#include "launcher/cli_util.h"
#include "launcher/command.h"
#include "launcher/session.h"

namespace glmpipe {
namespace {

struct ForwardOptions {
  SessionOptions session;
  std::string ids;
  int64_t prefill = 0;
  std::string out;
};

void run_forward(const ForwardOptions& o) {
  auto ids = parse_id_list(o.ids, "--ids");
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t prefill = o.prefill > 0 ? o.prefill : n;
  GLMPIPE_CHECK(prefill <= n) << "--prefill " << prefill << " exceeds the " << n << " ids given";
  SessionOptions so = o.session;
  if (so.max_seq <= 0) so.max_seq = n;
  std::string error;
  auto session = Session::create(so, [&](const TokenEvent& ev) {
    if (ev.finish_reason == "error") error = ev.error;
  });
  if (!session) return;
  std::vector<at::Tensor> rows;
  if (session->ctx().is_last_stage())
    session->runner().set_logits_callback([&](int64_t, const at::Tensor& l) { rows.push_back(l.clone()); });
  if (session->ctx().is_first_stage()) {
    Request r;
    r.id = "forward";
    r.input_ids.assign(ids.begin(), ids.begin() + prefill);
    r.forced.assign(ids.begin() + prefill, ids.end());
    r.all_logits = true;
    session->runner().scheduler().submit(std::move(r));
    session->runner().scheduler().request_shutdown();
  }
  session->run();
  GLMPIPE_CHECK(error.empty()) << "forward: " << error;
  if (session->ctx().is_last_stage()) {
    auto logits = at::cat(rows, 0);
    GLMPIPE_CHECK(logits.size(0) == n) << "forward produced " << logits.size(0) << " rows for " << n << " ids";
    save_npy(o.out, logits);
  }
}

CommandRegistrar reg("forward", "Logits of a token sequence (prefill + cached decode) to .npy", [](CLI::App& sub) {
  auto o = std::make_shared<ForwardOptions>();
  add_session_options(sub, o->session);
  sub.add_option("--ids", o->ids, "comma-separated token ids")->required();
  sub.add_option("--prefill", o->prefill, "how many leading ids go in the first call (default: all)");
  sub.add_option("--out", o->out, "output .npy file, float32 [len(ids), vocab]")->required();
  sub.callback([o] { run_forward(*o); });
});

}  // namespace
}  // namespace glmpipe
