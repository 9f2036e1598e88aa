// The parsers glmpipe feeds with untrusted bytes, as fuzz harnesses: each takes one input, runs the
// parser, touches what it returned (every tensor view's first and last byte, so that a range outside
// the input is an AddressSanitizer report) and swallows glmpipe::Error, the one expected way to fail.
// Any other exception, a crash, a leak or undefined behaviour is a finding.
//
// Used by the libFuzzer executables (tests/fuzz/*_fuzz.cpp, built with -DGLMPIPE_FUZZ=ON and clang,
// run by scripts/fuzz.sh) and by tests/unit/fuzz_replay_test.cpp, which replays the seed corpora
// and the regression inputs (tests/fuzz/{corpus,regressions}/<target>/) in the ordinary build.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace glmpipe::fuzz {

// Each returns true when the input was accepted (parsed without an Error).
bool pickle(const uint8_t* data, size_t size);       // data.pkl -> state-dict metadata
bool torch_zip(const uint8_t* data, size_t size);    // a whole torch.save file (zip + zip64 + pickle)
bool safetensors(const uint8_t* data, size_t size);  // a whole .safetensors file
bool wire_header(const uint8_t* data, size_t size);  // 88 header bytes + bytes that pick an Expectation
bool deployment_yaml(const uint8_t* data, size_t size);
bool chat_request(const uint8_t* data, size_t size);  // a POST /v1/chat/completions or /v1/completions body

struct Target {
  const char* name;  // folder name under tests/fuzz/corpus and tests/fuzz/regressions
  bool (*run)(const uint8_t*, size_t);
};
const std::vector<Target>& targets();

}  // namespace glmpipe::fuzz
