// safetensors reader (header only, bytes stay in the mapping) and writer.
#include "checkpoint/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/checked.h"
#include "common/error.h"

namespace glmpipe {

namespace {

// A non-negative JSON integer (parsed JSON keeps these as number_unsigned); anything else -> false.
bool json_u64(const nlohmann::json& v, uint64_t* out) {
  if (!v.is_number_unsigned()) return false;
  *out = v.get<uint64_t>();
  return true;
}

TensorLocation read_entry(const MappedFile& file, const std::string& file_name, const std::string& name,
                          const nlohmann::json& v, uint64_t base) {
  const std::string& path = file.path();
  TensorLocation loc;
  loc.info.name = name;
  loc.info.file = file_name;
  GLMPIPE_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"))
      << path << ": corrupt safetensors header entry for tensor " << name
      << ": expected an object with dtype, shape and data_offsets";
  const nlohmann::json &dt = v.at("dtype"), &shape = v.at("shape"), &offs = v.at("data_offsets");
  GLMPIPE_CHECK(dt.is_string()) << path << ": tensor " << name << ": dtype is not a string";
  const std::string dtype = dt.get<std::string>();
  GLMPIPE_CHECK(dtype_from_safetensors(dtype, &loc.info.dtype))
      << path << ": tensor " << name << " has unsupported dtype " << dtype;
  GLMPIPE_CHECK(shape.is_array() && shape.size() <= static_cast<size_t>(kMaxTensorDims))
      << path << ": tensor " << name << ": shape must be a list of at most " << kMaxTensorDims << " integers";
  for (const auto& d : shape) {
    uint64_t u = 0;
    GLMPIPE_CHECK(json_u64(d, &u) && u <= static_cast<uint64_t>(INT64_MAX))
        << path << ": tensor " << name << " has a negative or non-integer dimension " << d.dump();
    loc.info.shape.push_back(static_cast<int64_t>(u));
  }
  uint64_t begin = 0, end = 0;
  GLMPIPE_CHECK(offs.is_array() && offs.size() == 2 && json_u64(offs[0], &begin) && json_u64(offs[1], &end) &&
                begin <= end)
      << path << ": tensor " << name << " has invalid data_offsets " << offs.dump();
  // Offsets are relative to the end of the header: wrap-checked before anything is compared.
  const CheckedU64 rb = CheckedU64(base) + begin, re = CheckedU64(base) + end;
  GLMPIPE_CHECK(re.fits(file.size()))
      << path << ": tensor " << name << " data_offsets [" << begin << ", " << end << ") (+ " << base
      << " header bytes) lie beyond the end of the file (" << file.size() << " bytes): truncated shard?";
  loc.strides = contiguous_strides(loc.info.shape);
  loc.data_offset = loc.record_begin = rb.value();
  loc.record_end = re.value();
  check_tensor_in_file(&loc, file.size(), path);
  GLMPIPE_CHECK(end - begin == static_cast<uint64_t>(loc.info.nbytes))
      << path << ": tensor " << name << " has " << end - begin << " bytes for shape " << shape_str(loc.info.shape)
      << " " << dtype << " (expected " << loc.info.nbytes << "): dtype or shape does not match the data";
  return loc;
}

}  // namespace

std::vector<TensorLocation> read_safetensors_index(const MappedFile& file, const std::string& file_name) {
  const std::string& path = file.path();
  GLMPIPE_CHECK(file.size() >= 8) << path << ": too small for a safetensors file (" << file.size() << " bytes)";
  uint64_t header_len = 0;
  std::memcpy(&header_len, file.data(), 8);  // little-endian host (x86-64, aarch64)
  GLMPIPE_CHECK(header_len <= file.size() - 8)
      << path << ": safetensors header length " << header_len << " exceeds the file size " << file.size()
      << " (truncated or not a safetensors file)";
  GLMPIPE_CHECK(header_len <= kMaxSafetensorsHeader)
      << path << ": safetensors header of " << header_len << " bytes exceeds the limit of " << kMaxSafetensorsHeader;
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
    if (it.key() == "__metadata__") continue;
    out.push_back(read_entry(file, file_name, it.key(), it.value(), base));
  }
  // The format gives every tensor its own bytes: overlapping ranges alias weights (a crafted file).
  std::vector<const TensorLocation*> by_start;
  for (const auto& l : out)
    if (l.record_end > l.record_begin) by_start.push_back(&l);
  std::sort(by_start.begin(), by_start.end(),
            [](const TensorLocation* a, const TensorLocation* b) { return a->record_begin < b->record_begin; });
  for (size_t k = 1; k < by_start.size(); ++k)
    GLMPIPE_CHECK(by_start[k]->record_begin >= by_start[k - 1]->record_end)
        << path << ": tensors " << by_start[k - 1]->info.name << " and " << by_start[k]->info.name
        << " overlap (data [" << by_start[k - 1]->record_begin << ", " << by_start[k - 1]->record_end << ") and ["
        << by_start[k]->record_begin << ", " << by_start[k]->record_end << "))";
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
  // Pad the header (with spaces, as the format allows) so that the data starts 64-byte aligned:
  // tensors then sit in a mapping as aligned as in memory from at::empty, and the disk tier, which
  // computes straight from the mapped pages, runs the same kernels on the same alignment.
  while ((8 + h.size()) % 64 != 0) h.push_back(' ');
  const uint64_t len = h.size();
  AtomicFile f(path);
  f.write(&len, 8);
  f.write(h);
  for (const auto& c : data) f.write(c.data_ptr(), c.numel() * c.element_size());
  f.commit();
}

}  // namespace glmpipe
