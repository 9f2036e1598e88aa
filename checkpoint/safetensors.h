// safetensors: u64 little-endian header length, a JSON header
//   {"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}
// and the raw little-endian tensor bytes (offsets relative to the end of the header).
// reference: https://github.com/huggingface/safetensors (format description in its README)
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "checkpoint/mapped_file.h"

namespace glmpipe {

// Parses the header of a mapped safetensors file; touches no tensor bytes. Errors name the file
// (and the tensor) for a corrupt header, unsupported dtype or data outside the file.
// `file_name` is what goes into TensorInfo::file.
std::vector<TensorLocation> read_safetensors_index(const MappedFile& file, const std::string& file_name);

// Writes tensors (CPU, any supported dtype, made contiguous) atomically to `path`.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, at::Tensor>>& tensors);

}  // namespace glmpipe
