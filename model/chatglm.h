// ChatGLM-6B (v1) moved to model/chatglm/chatglm_shard.h (one folder per family); this header
// stays so that existing includes keep working.
#pragma once

#include "model/chatglm/chatglm_shard.h"
