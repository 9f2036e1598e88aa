// safetensors reader (header only, bytes stay in the mapping) and writer.
#include "checkpoint/safetensors.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "common/error.h"

namespace glmpipe {

std::vector<TensorLocation> read_safetensors_index(const MappedFile& file, const std::string& file_name) {
  const std::string& path = file.path();
  GLMPIPE_CHECK(file.size() >= 8) << path << ": too small for a safetensors file (" << file.size() << " bytes)";
  uint64_t header_len = 0;
  std::memcpy(&header_len, file.data(), 8);  // little-endian host (x86-64, aarch64)
  GLMPIPE_CHECK(header_len <= file.size() - 8)
      << path << ": safetensors header length " << header_len << " exceeds the file size " << file.size()
      << " (truncated or not a safetensors file)";
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(file.data() + 8, file.data() + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    GLMPIPE_FAIL() << path << ": corrupt safetensors JSON header: " << e.what();
  }
  GLMPIPE_CHECK(header.is_object()) << path << ": corrupt safetensors header: not a JSON object";
  const uint64_t base = 8 + header_len;
  std::vector<TensorLocation> out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const auto& v = it.value();
    TensorLocation loc;
    loc.info.name = name;
    loc.info.file = file_name;
    std::string dtype;
    std::vector<uint64_t> offsets;
    try {
      dtype = v.at("dtype").get<std::string>();
      for (const auto& d : v.at("shape")) loc.info.shape.push_back(d.get<int64_t>());
      offsets = v.at("data_offsets").get<std::vector<uint64_t>>();
    } catch (const nlohmann::json::exception& e) {
      GLMPIPE_FAIL() << path << ": corrupt safetensors header entry for tensor " << name << ": " << e.what();
    }
    GLMPIPE_CHECK(dtype_from_safetensors(dtype, &loc.info.dtype))
        << path << ": tensor " << name << " has unsupported dtype " << dtype;
    for (int64_t d : loc.info.shape)
      GLMPIPE_CHECK(d >= 0) << path << ": tensor " << name << " has a negative dimension";
    GLMPIPE_CHECK(offsets.size() == 2 && offsets[0] <= offsets[1])
        << path << ": tensor " << name << " has invalid data_offsets";
    loc.info.nbytes = numel_of(loc.info.shape) * static_cast<int64_t>(c10::elementSize(loc.info.dtype));
    GLMPIPE_CHECK(offsets[1] - offsets[0] == static_cast<uint64_t>(loc.info.nbytes))
        << path << ": tensor " << name << " has " << offsets[1] - offsets[0] << " bytes for shape "
        << shape_str(loc.info.shape) << " " << dtype << " (expected " << loc.info.nbytes << ")";
    GLMPIPE_CHECK(base + offsets[1] <= file.size())
        << path << ": tensor " << name << " data [" << base + offsets[0] << ", " << base + offsets[1]
        << ") lies beyond the end of the file (" << file.size() << " bytes): truncated shard?";
    loc.strides = contiguous_strides(loc.info.shape);
    loc.data_offset = base + offsets[0];
    loc.span_begin = base + offsets[0];
    loc.span_end = base + offsets[1];
    out.push_back(std::move(loc));
  }
  return out;
}

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  std::vector<at::Tensor> data;
  for (const auto& [name, t] : tensors) {
    at::Tensor c = t.cpu().contiguous();
    const uint64_t n = c.numel() * c.element_size();
    header[name] = {{"dtype", dtype_to_safetensors(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + n}}};
    offset += n;
    data.push_back(c);
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  const uint64_t len = h.size();
  AtomicFile f(path);
  f.write(&len, 8);
  f.write(h);
  for (const auto& c : data) f.write(c.data_ptr(), c.numel() * c.element_size());
  f.commit();
}

}  // namespace glmpipe
