// Zip central directory reader, torch.save index reader and writer.
#include "checkpoint/torch_zip.h"

#include <array>
#include <cstring>
#include <map>

#include "checkpoint/pickle.h"
#include "common/error.h"

namespace glmpipe {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50, kZip64LocatorSig = 0x07064b50;
constexpr uint64_t kAlign = 64;

template <typename T>
T rd(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Reads the end-of-central-directory (zip64 aware): returns entries count and directory offset.
void find_directory(const MappedFile& f, uint64_t* entries, uint64_t* cd_offset, uint64_t* cd_size) {
  const uint8_t* d = f.data();
  const uint64_t n = f.size();
  GLMPIPE_CHECK(n >= 22) << f.path() << ": not a zip archive (too small, truncated?)";
  int64_t eocd = -1;
  const uint64_t lowest = n >= 22 + 65535 ? n - 22 - 65535 : 0;
  for (uint64_t pos = n - 22 + 1; pos-- > lowest;) {
    if (rd<uint32_t>(d + pos) == kEndSig) {
      eocd = static_cast<int64_t>(pos);
      break;
    }
  }
  GLMPIPE_CHECK(eocd >= 0) << f.path()
                           << ": zip end-of-central-directory record not found (truncated or not a torch.save file)";
  const uint8_t* e = d + eocd;
  *entries = rd<uint16_t>(e + 10);
  *cd_size = rd<uint32_t>(e + 12);
  *cd_offset = rd<uint32_t>(e + 16);
  if (*entries == 0xFFFF || *cd_size == 0xFFFFFFFF || *cd_offset == 0xFFFFFFFF) {
    GLMPIPE_CHECK(eocd >= 20 && rd<uint32_t>(d + eocd - 20) == kZip64LocatorSig)
        << f.path() << ": zip64 end-of-central-directory locator missing";
    const uint64_t z = rd<uint64_t>(d + eocd - 20 + 8);
    GLMPIPE_CHECK(z + 56 <= n && rd<uint32_t>(d + z) == kZip64EndSig)
        << f.path() << ": zip64 end-of-central-directory record missing";
    *entries = rd<uint64_t>(d + z + 32);
    *cd_size = rd<uint64_t>(d + z + 40);
    *cd_offset = rd<uint64_t>(d + z + 48);
  }
  GLMPIPE_CHECK(*cd_offset <= n && *cd_size <= n - *cd_offset)
      << f.path() << ": zip central directory lies outside the file (truncated?)";
}

}  // namespace

std::vector<ZipEntry> read_zip_directory(const MappedFile& f) {
  uint64_t entries = 0, cd_offset = 0, cd_size = 0;
  find_directory(f, &entries, &cd_offset, &cd_size);
  const uint8_t* d = f.data();
  const uint64_t n = f.size();
  const uint64_t cd_end = cd_offset + cd_size;
  std::vector<ZipEntry> out;
  uint64_t pos = cd_offset;
  for (uint64_t i = 0; i < entries; ++i) {
    GLMPIPE_CHECK(pos + 46 <= cd_end && rd<uint32_t>(d + pos) == kCentralSig)
        << f.path() << ": corrupt zip central directory entry " << i;
    const uint8_t* c = d + pos;
    ZipEntry e;
    e.method = rd<uint16_t>(c + 10);
    e.comp_size = rd<uint32_t>(c + 20);
    e.size = rd<uint32_t>(c + 24);
    const uint16_t nlen = rd<uint16_t>(c + 28), xlen = rd<uint16_t>(c + 30), clen = rd<uint16_t>(c + 32);
    uint64_t local = rd<uint32_t>(c + 42);
    GLMPIPE_CHECK(pos + 46 + nlen + xlen + clen <= cd_end) << f.path() << ": corrupt zip central directory entry " << i;
    e.name.assign(reinterpret_cast<const char*>(c + 46), nlen);
    // zip64 extended information: only the fields whose 32-bit value is 0xFFFFFFFF, in this order.
    for (const uint8_t* x = c + 46 + nlen; x + 4 <= c + 46 + nlen + xlen;) {
      const uint16_t id = rd<uint16_t>(x), len = rd<uint16_t>(x + 2);
      const uint8_t* v = x + 4;
      const uint8_t* vend = std::min(v + len, c + 46 + nlen + xlen);
      if (id == 0x0001) {
        auto next = [&](uint64_t* field) {
          if (*field != 0xFFFFFFFF) return;
          GLMPIPE_CHECK(v + 8 <= vend) << f.path() << ": bad zip64 extra field for " << e.name;
          *field = rd<uint64_t>(v);
          v += 8;
        };
        next(&e.size);
        next(&e.comp_size);
        next(&local);
      }
      x += 4 + len;
    }
    GLMPIPE_CHECK(local + 30 <= n && rd<uint32_t>(d + local) == kLocalSig)
        << f.path() << ": zip record " << e.name << " has a bad local header (truncated file?)";
    e.data_offset = local + 30 + rd<uint16_t>(d + local + 26) + rd<uint16_t>(d + local + 28);
    out.push_back(std::move(e));
    pos += 46 + nlen + xlen + clen;
  }
  return out;
}

std::vector<TensorLocation> read_torch_zip_index(const MappedFile& f, const std::string& file_name) {
  std::vector<ZipEntry> entries = read_zip_directory(f);
  GLMPIPE_CHECK(!entries.empty()) << f.path() << ": empty zip archive";
  const std::string& first = entries.front().name;
  const std::string stem = first.substr(0, first.find('/'));
  std::map<std::string, const ZipEntry*> by_name;
  for (const auto& e : entries) by_name[e.name] = &e;
  auto pkl = by_name.find(stem + "/data.pkl");
  GLMPIPE_CHECK(pkl != by_name.end()) << f.path() << ": no " << stem << "/data.pkl (not a torch.save archive)";
  const ZipEntry& p = *pkl->second;
  GLMPIPE_CHECK(p.method == 0) << f.path() << ": " << p.name << " is compressed (torch.save stores records uncompressed)";
  GLMPIPE_CHECK(p.data_offset + p.size <= f.size()) << f.path() << ": " << p.name << " extends past the end of the file (truncated?)";
  std::vector<PickledTensor> pickled = unpickle_state_dict(f.data() + p.data_offset, p.size, f.path());

  std::vector<TensorLocation> out;
  for (const auto& t : pickled) {
    const std::string record = stem + "/data/" + t.storage_key;
    auto it = by_name.find(record);
    GLMPIPE_CHECK(it != by_name.end()) << f.path() << ": tensor " << t.name << ": storage record " << record << " missing";
    const ZipEntry& r = *it->second;
    GLMPIPE_CHECK(r.method == 0) << f.path() << ": tensor " << t.name << ": storage record " << record << " is compressed";
    const int64_t item = static_cast<int64_t>(c10::elementSize(t.dtype));
    GLMPIPE_CHECK(t.storage_numel >= 0 && static_cast<uint64_t>(t.storage_numel * item) <= r.size)
        << f.path() << ": tensor " << t.name << ": storage of " << t.storage_numel << " elements does not fit record "
        << record << " (" << r.size << " bytes)";
    GLMPIPE_CHECK(r.data_offset + r.size <= f.size())
        << f.path() << ": tensor " << t.name << ": data lies beyond the end of the file (" << f.size()
        << " bytes): truncated shard?";
    TensorLocation loc;
    loc.info.name = t.name;
    loc.info.dtype = t.dtype;
    loc.info.shape = t.shape;
    loc.info.file = file_name;
    loc.info.nbytes = numel_of(t.shape) * item;
    loc.strides = t.strides;
    int64_t last = t.storage_offset;  // highest element index touched
    bool empty = false;
    for (size_t i = 0; i < t.shape.size(); ++i) {
      GLMPIPE_CHECK(t.shape[i] >= 0 && t.strides[i] >= 0)
          << f.path() << ": tensor " << t.name << " has a negative size or stride";
      if (t.shape[i] == 0) empty = true;
      else last += (t.shape[i] - 1) * t.strides[i];
    }
    GLMPIPE_CHECK(t.storage_offset >= 0 && (empty || last < t.storage_numel))
        << f.path() << ": tensor " << t.name << " (offset " << t.storage_offset << ", shape " << shape_str(t.shape)
        << ") reaches outside its storage of " << t.storage_numel << " elements";
    loc.data_offset = r.data_offset + t.storage_offset * item;
    loc.span_begin = loc.data_offset;
    loc.span_end = empty ? loc.span_begin : r.data_offset + (last + 1) * item;
    out.push_back(std::move(loc));
  }
  return out;
}

// --- writing ---

uint32_t crc32_of(const void* data, size_t size, uint32_t crc) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  const uint8_t* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

namespace {
template <typename T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
}  // namespace

void ZipWriter::add(const std::string& name, const void* data, size_t size) {
  const uint64_t local = file_.offset();
  const uint64_t start = local + 30 + name.size() + 4;
  const uint64_t pad = (kAlign - start % kAlign) % kAlign;
  GLMPIPE_CHECK(start + pad + size < 0xFFFFFFFFull) << file_.path() << ": zip files above 4 GB are not written (no zip64)";
  const uint32_t crc = crc32_of(data, size);
  std::string h;
  put<uint32_t>(h, kLocalSig);
  put<uint16_t>(h, 20);  // version needed
  put<uint16_t>(h, 0);   // flags
  put<uint16_t>(h, 0);   // STORED
  put<uint16_t>(h, 0);   // time
  put<uint16_t>(h, 0x21);  // date 1980-01-01
  put<uint32_t>(h, crc);
  put<uint32_t>(h, static_cast<uint32_t>(size));
  put<uint32_t>(h, static_cast<uint32_t>(size));
  put<uint16_t>(h, static_cast<uint16_t>(name.size()));
  put<uint16_t>(h, static_cast<uint16_t>(4 + pad));
  h += name;
  h += "FB";
  put<uint16_t>(h, static_cast<uint16_t>(pad));
  h.append(pad, 'Z');
  file_.write(h);
  file_.write(data, size);
  entries_.push_back({name, crc, size, local});
}

void ZipWriter::finish() {
  const uint64_t cd_offset = file_.offset();
  std::string cd;
  for (const auto& e : entries_) {
    put<uint32_t>(cd, kCentralSig);
    put<uint16_t>(cd, 20);  // made by
    put<uint16_t>(cd, 20);  // needed
    put<uint16_t>(cd, 0);
    put<uint16_t>(cd, 0);
    put<uint16_t>(cd, 0);
    put<uint16_t>(cd, 0x21);
    put<uint32_t>(cd, e.crc);
    put<uint32_t>(cd, static_cast<uint32_t>(e.size));
    put<uint32_t>(cd, static_cast<uint32_t>(e.size));
    put<uint16_t>(cd, static_cast<uint16_t>(e.name.size()));
    put<uint16_t>(cd, 0);  // extra
    put<uint16_t>(cd, 0);  // comment
    put<uint16_t>(cd, 0);  // disk
    put<uint16_t>(cd, 0);  // internal attributes
    put<uint32_t>(cd, 0);  // external attributes
    put<uint32_t>(cd, static_cast<uint32_t>(e.local_offset));
    cd += e.name;
  }
  GLMPIPE_CHECK(cd_offset + cd.size() < 0xFFFFFFFFull && entries_.size() < 0xFFFF)
      << file_.path() << ": zip too large (no zip64 writing)";
  put<uint32_t>(cd, kEndSig);
  put<uint16_t>(cd, 0);
  put<uint16_t>(cd, 0);
  put<uint16_t>(cd, static_cast<uint16_t>(entries_.size()));
  put<uint16_t>(cd, static_cast<uint16_t>(entries_.size()));
  put<uint32_t>(cd, static_cast<uint32_t>(cd.size() - 0));  // placeholder, fixed below
  put<uint32_t>(cd, static_cast<uint32_t>(cd_offset));
  put<uint16_t>(cd, 0);
  const uint32_t cd_size = static_cast<uint32_t>(cd.size() - 22);
  std::memcpy(&cd[cd.size() - 22 + 12], &cd_size, 4);
  file_.write(cd);
  file_.commit();
}

void write_torch_save(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  std::string base = path.substr(path.find_last_of('/') + 1);
  const std::string stem = base.substr(0, base.rfind('.'));
  std::vector<PickledTensor> meta;
  std::vector<at::Tensor> data;
  for (size_t i = 0; i < tensors.size(); ++i) {
    at::Tensor c = tensors[i].second.cpu().contiguous();
    PickledTensor p;
    p.name = tensors[i].first;
    p.storage_key = std::to_string(i);
    p.dtype = c.scalar_type();
    p.storage_numel = c.numel();
    p.shape = c.sizes().vec();
    p.strides = contiguous_strides(p.shape);
    meta.push_back(std::move(p));
    data.push_back(c);
  }
  const std::string pkl = pickle_state_dict(meta);
  ZipWriter zip(path);
  zip.add(stem + "/data.pkl", pkl.data(), pkl.size());
  zip.add(stem + "/byteorder", "little", 6);
  for (size_t i = 0; i < data.size(); ++i)
    zip.add(stem + "/data/" + std::to_string(i), data[i].data_ptr(), data[i].numel() * data[i].element_size());
  zip.add(stem + "/version", "3\n", 2);
  zip.finish();
}

}  // namespace glmpipe
