// Checkpoint: layout detection, per-shard header parsing, validation against config.json, and
// tensor loading out of lazily mmapped shards. Also write_checkpoint (sharding + index json).
#include "checkpoint/checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <fstream>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "checkpoint/bulk_read.h"
#include "checkpoint/mapped_file.h"
#include "checkpoint/safetensors.h"
#include "checkpoint/torch_zip.h"
#include "common/error.h"
#include "model/family.h"

namespace glmpipe {
namespace {

bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// One weights file; mapped on first use and kept mapped for the Checkpoint's lifetime.
struct Shard {
  std::string file;  // name relative to the directory
  std::string path;
  std::mutex mu;
  std::shared_ptr<MappedFile> mapped;

  std::shared_ptr<MappedFile> get() {
    std::lock_guard<std::mutex> lock(mu);
    if (!mapped) mapped = MappedFile::open(path);
    return mapped;
  }
};

std::vector<TensorLocation> read_index_of(const MappedFile& f, const std::string& file) {
  return ends_with(file, ".safetensors") ? read_safetensors_index(f, file) : read_torch_zip_index(f, file);
}

nlohmann::json read_json(const std::string& path) {
  check_regular_file(path, "checkpoint index");
  std::ifstream in(path, std::ios::binary);
  GLMPIPE_CHECK(in.good()) << path << ": cannot open";
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    return nlohmann::json::parse(text);  // strict: trailing garbage after the object is an error
  } catch (const nlohmann::json::exception& e) {
    GLMPIPE_FAIL() << path << ": invalid JSON: " << e.what();
  }
  return {};
}

void make_dirs(const std::string& dir) {
  for (size_t pos = 1; pos != std::string::npos;) {
    pos = dir.find('/', pos + 1);
    const std::string part = dir.substr(0, pos);
    if (!exists(part)) ::mkdir(part.c_str(), 0755);
  }
  struct stat st;
  GLMPIPE_CHECK(::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) << dir << ": cannot create directory";
}

}  // namespace

struct Checkpoint::Impl {
  std::string dir;
  ModelConfig config;
  std::vector<TensorInfo> infos;       // sorted by name
  std::vector<TensorLocation> locs;    // same order
  std::vector<size_t> shard_of;        // same order
  std::map<std::string, size_t> index;
  std::vector<std::unique_ptr<Shard>> shards;

  size_t find(const std::string& name) const {
    auto it = index.find(name);
    GLMPIPE_CHECK(it != index.end()) << dir << ": checkpoint has no tensor " << name;
    return it->second;
  }
};

Checkpoint Checkpoint::open(const std::string& dir_in) {
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  struct stat st;
  GLMPIPE_CHECK(::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) << dir << ": checkpoint directory does not exist";
  auto impl = std::make_shared<Impl>();
  impl->dir = dir;
  impl->config = load_model_config(dir + "/config.json");
  // The family's tensor schema checks shapes and names the tensors the model recomputes.
  const ModelSchema schema = model_schema(impl->config);

  // file -> names the index assigns to it (empty set = take every tensor of a single file)
  std::map<std::string, std::set<std::string>> files;
  std::string index_path;
  for (const char* idx : {"pytorch_model.bin.index.json", "model.safetensors.index.json"}) {
    if (exists(dir + "/" + idx)) {
      index_path = dir + "/" + idx;
      break;
    }
  }
  if (!index_path.empty()) {
    nlohmann::json j = read_json(index_path);
    GLMPIPE_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object())
        << index_path << ": missing \"weight_map\" object";
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      GLMPIPE_CHECK(it.value().is_string()) << index_path << ": weight_map entry " << it.key() << " is not a file name";
      const std::string file = it.value().get<std::string>();
      GLMPIPE_CHECK(file.find('/') == std::string::npos && exists(dir + "/" + file))
          << index_path << ": tensor " << it.key() << " is mapped to " << file << ", which does not exist";
      files[file].insert(it.key());
    }
  } else if (exists(dir + "/pytorch_model.bin")) {
    files["pytorch_model.bin"];
  } else if (exists(dir + "/model.safetensors")) {
    files["model.safetensors"];
  } else {
    GLMPIPE_FAIL() << dir << ": no weights found (expected pytorch_model.bin.index.json, model.safetensors.index.json, "
                   << "pytorch_model.bin or model.safetensors)";
  }

  std::vector<std::pair<TensorLocation, size_t>> all;
  for (const auto& [file, wanted] : files) {
    auto shard = std::make_unique<Shard>();
    shard->file = file;
    shard->path = dir + "/" + file;
    std::vector<TensorLocation> locs;
    {
      auto mapped = MappedFile::open(shard->path);  // header pages only; dropped after parsing
      locs = read_index_of(*mapped, file);
    }
    std::set<std::string> present;
    for (auto& loc : locs) {
      present.insert(loc.info.name);
      if (!index_path.empty() && !wanted.count(loc.info.name)) continue;
      const TensorSpec* spec = schema.find(loc.info.name);
      if (spec && schema.param_of(*spec).kind == ParamKind::kIgnored) continue;  // recomputed by the model
      if (ends_with(loc.info.name, ".rotary_emb.inv_freq")) continue;
      all.emplace_back(std::move(loc), impl->shards.size());
    }
    for (const auto& name : wanted)
      GLMPIPE_CHECK(present.count(name)) << index_path << ": tensor " << name << " is mapped to " << shard->path
                                         << ", but that shard does not contain it";
    impl->shards.push_back(std::move(shard));
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first.info.name < b.first.info.name; });
  for (auto& [loc, shard] : all) {
    GLMPIPE_CHECK(!impl->index.count(loc.info.name)) << dir << ": tensor " << loc.info.name << " appears twice";
    check_tensor(schema, dir + "/" + loc.info.file, loc.info.name, loc.info.shape,
                 loc.info.dtype == at::kChar || loc.info.dtype == at::kByte, at::isFloatingType(loc.info.dtype),
                 c10::toString(loc.info.dtype));
    impl->index[loc.info.name] = impl->infos.size();
    impl->infos.push_back(loc.info);
    impl->locs.push_back(std::move(loc));
    impl->shard_of.push_back(shard);
  }
  return Checkpoint(std::move(impl));
}

Checkpoint::Checkpoint(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Checkpoint::Checkpoint(Checkpoint&&) noexcept = default;
Checkpoint& Checkpoint::operator=(Checkpoint&&) noexcept = default;
Checkpoint::Checkpoint(const Checkpoint&) = default;
Checkpoint::~Checkpoint() = default;

const std::string& Checkpoint::dir() const { return impl_->dir; }
const ModelConfig& Checkpoint::config() const { return impl_->config; }
const std::vector<TensorInfo>& Checkpoint::tensors() const { return impl_->infos; }
bool Checkpoint::has(const std::string& name) const { return impl_->index.count(name) != 0; }
const TensorInfo& Checkpoint::info(const std::string& name) const { return impl_->infos[impl_->find(name)]; }

at::Tensor Checkpoint::map(const std::string& name) const {
  const size_t i = impl_->find(name);
  const TensorLocation& loc = impl_->locs[i];
  std::shared_ptr<MappedFile> file = impl_->shards[impl_->shard_of[i]]->get();
  // The whole byte range of the view (offset, numel x element size, strides), checked again against
  // the mapping actually used: the file may have changed since open().
  TensorLocation check = loc;
  check_tensor_in_file(&check, file->size(), file->path());
  void* ptr = const_cast<uint8_t*>(file->data() + loc.data_offset);
  return at::from_blob(ptr, loc.info.shape, loc.strides, [file](void*) {},
                       at::TensorOptions().dtype(loc.info.dtype));
}

at::Tensor Checkpoint::map_resident(const std::string& name) const {
  at::Tensor view = map(name);  // checks the byte range against the mapping
  const size_t i = impl_->find(name);
  const TensorLocation& loc = impl_->locs[i];
  impl_->shards[impl_->shard_of[i]]->get()->populate(loc.span_begin, loc.span_end - loc.span_begin);
  return view;
}

at::Tensor Checkpoint::load_rows(const std::string& name, int64_t row, int64_t n, at::ScalarType dtype) const {
  const size_t i = impl_->find(name);
  const TensorLocation& loc = impl_->locs[i];
  GLMPIPE_CHECK(!loc.info.shape.empty() && row >= 0 && n >= 0 && row + n <= loc.info.shape[0])
      << dir() << ": rows [" << row << ", " << row + n << ") of tensor " << name << " " << shape_str(loc.info.shape);
  at::Tensor src = map(name).narrow(0, row, n);
  at::Tensor out = at::empty(src.sizes(), at::TensorOptions().dtype(dtype));
  out.copy_(src);
  src.reset();
  release_rows(name, row, n);
  return out;
}

void Checkpoint::release_rows(const std::string& name, int64_t row, int64_t n) const {
  const size_t i = impl_->find(name);
  const TensorLocation& loc = impl_->locs[i];
  if (loc.info.shape.empty() || loc.info.shape[0] == 0 || loc.strides != contiguous_strides(loc.info.shape)) return;
  const uint64_t row_bytes = static_cast<uint64_t>(loc.info.nbytes / loc.info.shape[0]);
  impl_->shards[impl_->shard_of[i]]->get()->release(loc.data_offset + static_cast<uint64_t>(row) * row_bytes,
                                                     static_cast<uint64_t>(n) * row_bytes);
}

void Checkpoint::release(const std::string& name) const {
  const size_t i = impl_->find(name);
  const TensorLocation& loc = impl_->locs[i];
  impl_->shards[impl_->shard_of[i]]->get()->release(loc.span_begin, loc.span_end - loc.span_begin);
}

at::Tensor Checkpoint::load(const std::string& name, at::ScalarType dtype, at::Device device) const {
  const size_t i = impl_->find(name);
  const TensorLocation& loc = impl_->locs[i];
  std::shared_ptr<MappedFile> file = impl_->shards[impl_->shard_of[i]]->get();
  if (dtype == at::ScalarType::Undefined) dtype = loc.info.dtype;
  at::Tensor out = empty_huge(loc.info.shape, dtype);
  if (dtype == loc.info.dtype && loc.strides == contiguous_strides(loc.info.shape)) {
    // Stored as wanted (the int weights of a pre-quantized checkpoint): pread into the final buffer,
    // the mapping never touched. The file's size was checked at open; read() checks it again.
    TensorLocation check = loc;
    check_tensor_in_file(&check, file->size(), file->path());
    parallel_read(*file, loc.data_offset, static_cast<uint64_t>(loc.info.nbytes), out.data_ptr());
    return device != at::Device(at::kCPU) ? out.to(device) : out;
  }
  at::Tensor src = map(name);
  // The source pages are file-backed and clean: dropping them as we go keeps the transient of a
  // load at one slice (~16 MiB) instead of a whole source tensor (2 GiB for a fp32 embedding), so
  // peak RSS is the bytes kept plus a slice (the planner counts exactly the bytes kept).
  const int64_t rows = loc.info.shape.empty() ? 1 : loc.info.shape[0];
  const int64_t row_bytes = rows > 0 ? loc.info.nbytes / rows : 0;
  if (rows > 1 && row_bytes > 0 && loc.strides == contiguous_strides(loc.info.shape)) {
    constexpr int64_t kSlice = int64_t{16} << 20;
    const int64_t step = std::max<int64_t>(1, kSlice / row_bytes);
    for (int64_t r = 0; r < rows; r += step) {
      const int64_t n = std::min(step, rows - r);
      out.narrow(0, r, n).copy_(src.narrow(0, r, n));
      file->release(loc.data_offset + static_cast<uint64_t>(r * row_bytes), static_cast<uint64_t>(n * row_bytes));
    }
  } else {
    out.copy_(src);
  }
  src.reset();
  file->release(loc.span_begin, loc.span_end - loc.span_begin);
  if (device != at::Device(at::kCPU)) out = out.to(device);
  return out;
}

// --- writing ---

void write_checkpoint(const std::string& dir, const ModelConfig& cfg,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors, const WriteOptions& opts) {
  GLMPIPE_CHECK(opts.shards >= 1) << dir << ": shards must be >= 1, got " << opts.shards;
  GLMPIPE_CHECK(opts.shards == 1 || static_cast<size_t>(opts.shards) <= tensors.size())
      << dir << ": cannot split " << tensors.size() << " tensors into " << opts.shards << " shards";
  make_dirs(dir);
  const bool bin = opts.format == CheckpointFormat::kBin;
  const int n = opts.shards;

  // Split in order, balancing bytes: shard k starts at the first tensor whose preceding bytes
  // reach k/n of the total, keeping at least one tensor per shard.
  std::vector<int64_t> prefix(tensors.size() + 1, 0);
  for (size_t i = 0; i < tensors.size(); ++i)
    prefix[i + 1] = prefix[i] + tensors[i].second.numel() * tensors[i].second.element_size();
  const int64_t total = prefix.back();
  std::vector<size_t> begin(n + 1, 0);
  begin[n] = tensors.size();
  for (int k = 1; k < n; ++k) {
    size_t i = begin[k - 1] + 1;
    while (i < tensors.size() && prefix[i] * n < total * k) ++i;
    begin[k] = std::min(i, tensors.size() - static_cast<size_t>(n - k));
  }
  std::vector<std::string> written;
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  try {
    for (int k = 0; k < n; ++k) {
      char name[64];
      if (n == 1) std::snprintf(name, sizeof(name), bin ? "pytorch_model.bin" : "model.safetensors");
      else std::snprintf(name, sizeof(name), bin ? "pytorch_model-%05d-of-%05d.bin" : "model-%05d-of-%05d.safetensors", k + 1, n);
      std::vector<std::pair<std::string, at::Tensor>> part(tensors.begin() + begin[k], tensors.begin() + begin[k + 1]);
      for (const auto& t : part) weight_map[t.first] = name;
      const std::string path = dir + "/" + name;
      if (bin) write_torch_save(path, part);
      else write_safetensors(path, part);
      written.push_back(path);
    }
    if (n > 1) {
      nlohmann::ordered_json index;
      index["metadata"] = {{"total_size", total}};
      index["weight_map"] = weight_map;
      const std::string path = dir + (bin ? "/pytorch_model.bin.index.json" : "/model.safetensors.index.json");
      write_file_atomically(path, index.dump(2) + "\n");
      written.push_back(path);
    }
    save_model_config(cfg, dir + "/config.json");
  } catch (...) {
    for (const auto& p : written) std::remove(p.c_str());
    throw;
  }
}

}  // namespace glmpipe
