// libFuzzer entry point for glmpipe::fuzz::pickle (see fuzz_targets.h).
#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  glmpipe::fuzz::pickle(data, size);
  return 0;
}
