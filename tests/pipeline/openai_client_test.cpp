// `glmpipe serve` driven by the official `openai` Python package, as users do. scripts/setup.sh
// installs it from PyPI into .venv/ of the source tree; without it (no network) the test skips.
#include <gtest/gtest.h>

#include <fstream>

#include "tests/http_client.h"
#include "tests/test_util.h"

using namespace glmpipe;

namespace {

const char* kScript = R"py(
import sys
import openai

base, prompt = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base, api_key="unused")

ids = [m.id for m in client.models.list().data]
assert ids == ["demo"], ids

# /v1/completions: greedy recites the paragraph; logprobs; streaming gives the same text.
c = client.completions.create(model="demo", prompt=prompt, max_tokens=12, temperature=0, logprobs=2)
text = c.choices[0].text
assert text.startswith(" that a single man"), text
assert len(c.choices[0].logprobs.token_logprobs) == 12
assert all(len(t) == 2 for t in c.choices[0].logprobs.top_logprobs)
assert c.usage.completion_tokens == 12, c.usage
streamed = "".join(ch.choices[0].text for ch in client.completions.create(
    model="demo", prompt=prompt, max_tokens=12, temperature=0, stream=True) if ch.choices)
assert streamed == text, (streamed, text)
cut = client.completions.create(model="demo", prompt=prompt, max_tokens=12, temperature=0, stop=[" single"])
assert cut.choices[0].text == text[:text.index(" single")], cut.choices[0].text
assert cut.choices[0].finish_reason == "stop"

# Chat: plain, n with seed, logprobs, streaming with include_usage.
msgs = [{"role": "user", "content": prompt}]
r = client.chat.completions.create(model="demo", messages=msgs, max_tokens=6, temperature=0)
assert isinstance(r.choices[0].message.content, str)
assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
a = client.chat.completions.create(model="demo", messages=msgs, max_tokens=4, n=3, seed=9, temperature=3, top_p=1)
b = client.chat.completions.create(model="demo", messages=msgs, max_tokens=4, n=3, seed=9, temperature=3, top_p=1)
assert [x.message.content for x in a.choices] == [x.message.content for x in b.choices]
assert len(a.choices) == 3
lp = client.chat.completions.create(model="demo", messages=msgs, max_tokens=3, temperature=0, logprobs=True, top_logprobs=2)
content = lp.choices[0].logprobs.content
assert len(content) == 3 and all(len(t.top_logprobs) == 2 for t in content)
chunks = list(client.chat.completions.create(model="demo", messages=msgs, max_tokens=6, temperature=0, stream=True,
                                             stream_options={"include_usage": True}))
assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
joined = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
assert joined.strip() == r.choices[0].message.content, (joined, r.choices[0].message.content)

# Refused fields are BadRequestError naming the field.
for kwargs, param in [({"response_format": {"type": "json_object"}}, "response_format"),
                      ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
                      ({"logprobs": True, "top_logprobs": 30}, "top_logprobs")]:
    try:
        client.chat.completions.create(model="demo", messages=msgs, max_tokens=2, **kwargs)
        raise AssertionError(f"{param}: no error")
    except openai.BadRequestError as e:
        assert e.param == param, (e.param, param)
print("OK")
)py";

TEST(OpenAIClient, OfficialPythonPackageDrivesTheServer) {
  const std::string python = test::source_dir() + "/.venv/bin/python";
  if (test::run_command(python + " -c 'import openai'").exit_code != 0)
    GTEST_SKIP() << "the openai Python package is not installed in " << python
                 << " (scripts/setup.sh installs it from PyPI when the network allows)";
  const std::string dir = test::make_temp_dir("openai_client");
  std::ofstream(dir + "/client.py") << kScript;
  test::ServeProcess server(dir, "--model " + test::source_dir() + "/models/demo --threads 1 --max-batch 4 --max-seq 256");
  ASSERT_TRUE(server.wait_healthy(90)) << server.log();
  auto r = test::run_command(python + " " + dir + "/client.py " + server.url("/v1") +
                             " 'It is a truth universally acknowledged,'");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << "\n" << server.log();
  EXPECT_NE(r.out.find("OK"), std::string::npos) << r.out << r.err;
}

}  // namespace
