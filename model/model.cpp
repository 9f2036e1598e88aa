#include "model/model.h"

#include "common/error.h"

namespace glmpipe {

std::unique_ptr<Shard> make_shard(const ModelConfig& config, const ShardSpec& spec, const ModelOptions& options) {
  switch (config.family) {
    case Family::kChatGLM: return std::make_unique<ChatGLMShard>(config, spec, options);
    case Family::kChatGLM2: return std::make_unique<ChatGLM2Shard>(config, spec, options);
  }
  GLMPIPE_FAIL() << "unknown model family";
  return nullptr;
}

}  // namespace glmpipe
