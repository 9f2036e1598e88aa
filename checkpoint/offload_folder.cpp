// open_offload_folder: converted copies of disk units, written once (see offload_folder.h).
#include "checkpoint/offload_folder.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "checkpoint/mapped_file.h"
#include "checkpoint/model_config.h"
#include "checkpoint/safetensors.h"
#include "common/error.h"

namespace glmpipe {
namespace {

namespace fs = std::filesystem;

// What the copy was made from: the checkpoint directory, the compute dtype and each source shard's
// size and mtime (a re-downloaded checkpoint rewrites the folder).
nlohmann::json source_stamp(const Checkpoint& src, at::ScalarType dtype) {
  nlohmann::json files = nlohmann::json::object();
  for (const TensorInfo& t : src.tensors()) {
    if (files.contains(t.file)) continue;
    struct stat st {};
    const std::string path = src.dir() + "/" + t.file;
    if (::stat(path.c_str(), &st) != 0) continue;
    files[t.file] = {{"size", static_cast<int64_t>(st.st_size)}, {"mtime", static_cast<int64_t>(st.st_mtime)}};
  }
  return {{"source", fs::absolute(src.dir()).lexically_normal().string()},
          {"dtype", std::string(c10::toString(dtype))},
          {"files", files}};
}

nlohmann::json read_json_or_null(const fs::path& p) {
  std::ifstream in(p);
  if (!in.good()) return nullptr;
  try {
    nlohmann::json j;
    in >> j;
    return j;
  } catch (const nlohmann::json::exception&) {
    return nullptr;  // a torn file from an interrupted run: rewrite
  }
}

}  // namespace

OffloadResult open_offload_folder(const Checkpoint& src, const std::string& dir, at::ScalarType dtype,
                                  const std::vector<OffloadUnit>& units) {
  GLMPIPE_CHECK(!dir.empty()) << "disk.path: the disk units are not stored in the compute dtype " << dtype
                              << ", so they need an offload folder for a converted copy (disk: {path: DIR})";
  const fs::path folder = fs::path(dir) / ("glmpipe-" + std::string(c10::toString(dtype)));
  std::error_code ec;
  fs::create_directories(folder, ec);
  GLMPIPE_CHECK(fs::is_directory(folder)) << folder.string() << ": cannot create the offload folder (disk.path): "
                                          << ec.message();
  const nlohmann::json stamp = source_stamp(src, dtype);
  const bool same_source = read_json_or_null(folder / "source.json") == stamp;
  // name -> file of what is already there (only when it was made from this source)
  std::map<std::string, std::string> weight_map;
  if (same_source) {
    nlohmann::json idx = read_json_or_null(folder / "model.safetensors.index.json");
    if (idx.is_object() && idx["weight_map"].is_object())
      for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it)
        if (it.value().is_string() && fs::exists(folder / it.value().get<std::string>()))
          weight_map[it.key()] = it.value().get<std::string>();
  } else {
    fs::remove(folder / "source.json", ec);
  }
  int written = 0;
  for (const OffloadUnit& u : units) {
    bool present = true;
    for (const std::string& n : u.names) present = present && weight_map.count(n);
    if (present) continue;
    std::vector<std::pair<std::string, at::Tensor>> tensors;  // one unit in memory at a time
    for (const std::string& n : u.names) tensors.emplace_back(n, src.load(n, dtype));
    const std::string file = u.unit + ".safetensors";
    try {
      write_safetensors((folder / file).string(), tensors);
    } catch (const Error& e) {
      GLMPIPE_FAIL() << folder.string() << ": cannot write the converted copy of " << u.unit
                     << " (disk.path): " << e.what();
    }
    for (const std::string& n : u.names) weight_map[n] = file;
    ++written;
  }
  if (written > 0 || !same_source) {
    nlohmann::ordered_json idx;
    idx["metadata"] = {{"format", "glmpipe offload folder"}};
    idx["weight_map"] = nlohmann::ordered_json::object();
    for (const auto& [n, f] : weight_map) idx["weight_map"][n] = f;
    write_file_atomically((folder / "model.safetensors.index.json").string(), idx.dump(1) + "\n");
    save_model_config(src.config(), (folder / "config.json").string());
    write_file_atomically((folder / "source.json").string(), stamp.dump(1) + "\n");  // last: marks it complete
  }
  return {Checkpoint::open(folder.string()), written};
}

}  // namespace glmpipe
