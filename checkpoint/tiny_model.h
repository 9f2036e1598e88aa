// make_tiny_model moved to model/tiny_model.h (it writes each family's schema); this header stays
// so that existing includes keep working.
#pragma once

#include "model/tiny_model.h"
