// Minimal NumPy .npy (format 1.0) writer/reader for float32/int64 tensors: `glmpipe forward --out`.
// Written to a temporary name and renamed, so a failed run never leaves a half-written file.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace glmpipe {

void save_npy(const std::string& path, const at::Tensor& t);  // float32, float64, int32 or int64
at::Tensor load_npy(const std::string& path);                   // C-order little-endian only

}  // namespace glmpipe
