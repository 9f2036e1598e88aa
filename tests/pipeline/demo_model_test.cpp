// The committed demo model (models/demo: a 4-layer ChatGLM-6B-architecture model trained by
// scripts/train_demo_model.py to memorize the opening of Pride and Prejudice):
//   - the C++ tokenizer and forward pass agree with the PyTorch reference it was trained with
//     (scripts/chatglm_ref.py; skipped when /usr/bin/python3 has no torch);
//   - greedy generation from the beginning of a paragraph writes the rest of that paragraph, read
//     from models/demo/source_text.txt, in one process and through a 2-rank MPI pipeline.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "common/npy.h"
#include "tests/test_util.h"

using namespace glmpipe;

namespace {

const char* kPython = "/usr/bin/python3";

std::string model_dir() { return test::source_dir() + "/models/demo"; }

bool python_has_torch() { return test::run_command(std::string(kPython) + " -c 'import torch'").exit_code == 0; }

// Single-quoted for /bin/sh.
std::string sh_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \n");
  const auto e = s.find_last_not_of(" \n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// The rest of the source paragraph that begins with `prompt`: what the model has memorized.
std::string memorized_continuation(const std::string& prompt) {
  std::ifstream in(model_dir() + "/source_text.txt");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(prompt, 0) == 0) return trim(line.substr(prompt.size()));
  ADD_FAILURE() << "no paragraph of models/demo/source_text.txt starts with: " << prompt;
  return "";
}

test::RunResult glmpipe(const std::string& args) {
  return test::run_command("timeout 180 " + test::glmpipe_bin() + " " + args);
}

std::string tokenize(const std::string& text, bool special) {
  auto r = glmpipe("tokenize --tokenizer " + model_dir() + "/ice_text.model --text " + sh_quote(text) +
                   (special ? "" : " --no-special"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return trim(r.out);
}

// The PyTorch forward the demo model was trained with reproduces the spec's independent reference
// outputs (chatglm.cpp's glm_model.data, made with the official modeling code; spec §5.1).
TEST(DemoModel, PytorchReferenceReproducesTheSpecReferenceData) {
  if (!python_has_torch()) GTEST_SKIP() << kPython << " cannot import torch";
  const std::string data = test::shared_data() + "/reference/glm_model.data";
  if (!test::file_exists(data)) GTEST_SKIP() << data << " not present";
  auto r = test::run_command(std::string(kPython) + " " + test::source_dir() + "/scripts/chatglm_ref.py check-reference --data " + data);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST(DemoModel, TokenizerAndLogitsMatchThePytorchReference) {
  if (!python_has_torch()) GTEST_SKIP() << kPython << " cannot import torch";
  const std::string dir = test::make_temp_dir("demo_logits");
  const std::string ref = kPython + std::string(" ") + test::source_dir() + "/scripts/chatglm_ref.py";
  const std::string prompt = "However little known the feelings";
  // Same prompt ids as the training script produced with spm_encode (text, [gMASK], <sop>).
  const std::string prompt_ids = tokenize(prompt, true);
  auto py_ids = test::run_command(ref + " ids --model " + model_dir() + " --prompt " + sh_quote(prompt));
  ASSERT_EQ(py_ids.exit_code, 0) << py_ids.err;
  ASSERT_EQ(prompt_ids, trim(py_ids.out));
  // Prompt + the first memorized continuation tokens: a prefill then one-token decode steps here,
  // one full masked pass in Python.
  std::string cont = tokenize(memorized_continuation(prompt), false);
  for (int commas = 0, i = 0; i < static_cast<int>(cont.size()); ++i)
    if (cont[i] == ',' && ++commas == 12) cont.resize(i);
  const std::string ids = prompt_ids + "," + cont;
  const int prefill = static_cast<int>(std::count(prompt_ids.begin(), prompt_ids.end(), ',')) + 1;
  auto cpp = glmpipe("forward --model " + model_dir() + " --dtype float32 --ids " + ids + " --prefill " +
                     std::to_string(prefill) + " --out " + dir + "/cpp.npy");
  ASSERT_EQ(cpp.exit_code, 0) << cpp.err;
  auto py = test::run_command(ref + " logits --model " + model_dir() + " --ids " + ids + " --out " + dir + "/py.npy");
  ASSERT_EQ(py.exit_code, 0) << py.err;
  at::Tensor a = load_npy(dir + "/cpp.npy"), b = load_npy(dir + "/py.npy");  // [len(ids), vocab]
  ASSERT_EQ(a.sizes(), b.sizes());
  const double scale = b.abs().max().item<double>();
  const double diff = (a - b).abs().max().item<double>();
  EXPECT_LE(diff, 1e-4 * std::max(1.0, scale)) << "max |logit| " << scale;
  EXPECT_TRUE(at::equal(a.argmax(-1), b.argmax(-1)));
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(DemoModel, GreedyGenerationRecitesTheTextInOneProcess) {
  for (const std::string prompt : {"It is a truth universally acknowledged,", "However little known the feelings"}) {
    auto r = glmpipe("generate --model " + model_dir() + " --threads 1 --greedy --prompt " + sh_quote(prompt));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(trim(r.out), memorized_continuation(prompt)) << "prompt: " << prompt;
  }
}

TEST(DemoModel, GreedyGenerationRecitesTheTextThroughTwoRanks) {
  const std::string prompt = "\"Why, my dear, you must know,";  // ~150 tokens to recite
  auto r = glmpipe("generate --config " + test::source_dir() + "/configs/tiny_cpu_2rank.yaml --model " + model_dir() +
                   " --greedy --prompt " + sh_quote(prompt));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(trim(r.out), memorized_continuation(prompt)) << r.err;
}

}  // namespace
