// libFuzzer entry point for glmpipe::fuzz::wire_header (see fuzz_targets.h).
#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  glmpipe::fuzz::wire_header(data, size);
  return 0;
}
