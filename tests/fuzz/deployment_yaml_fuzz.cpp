// libFuzzer entry point for glmpipe::fuzz::deployment_yaml (see fuzz_targets.h).
#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  glmpipe::fuzz::deployment_yaml(data, size);
  return 0;
}
