// libFuzzer entry point for glmpipe::fuzz::chat_request (see fuzz_targets.h).
#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  glmpipe::fuzz::chat_request(data, size);
  return 0;
}
