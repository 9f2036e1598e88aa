// Every family's shard and the factory that picks one from the config: what code that runs a
// model of any family includes (the stage runner, the launcher, benchmarks).
//
//   std::unique_ptr<Shard> shard = make_shard(ckpt.config(), spec, options);
#pragma once

#include <memory>

#include "model/chatglm/chatglm_shard.h"
#include "model/chatglm2/chatglm2_shard.h"
#include "model/shard.h"

namespace glmpipe {

// The family's shard for `config.family` (model/chatglm/ or model/chatglm2/).
std::unique_ptr<Shard> make_shard(const ModelConfig& config, const ShardSpec& spec, const ModelOptions& options);

}  // namespace glmpipe
