// ModelConfig moved to model/model_config.h (the families own their config.json); this header
// stays so that existing includes keep working.
#pragma once

#include "model/model_config.h"
