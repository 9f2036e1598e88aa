// Zip central directory reader, torch.save index reader and writer.
#include "checkpoint/torch_zip.h"

#include <array>
#include <cstring>
#include <map>

#include "checkpoint/pickle.h"
#include "common/checked.h"
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
    GLMPIPE_CHECK((CheckedU64(z) + 56).fits(n) && rd<uint32_t>(d + z) == kZip64EndSig)
        << f.path() << ": zip64 end-of-central-directory record missing (offset " << z << " of " << n << " bytes)";
    *entries = rd<uint64_t>(d + z + 32);
    *cd_size = rd<uint64_t>(d + z + 40);
    *cd_offset = rd<uint64_t>(d + z + 48);
  }
  GLMPIPE_CHECK(*cd_offset <= n && *cd_size <= n - *cd_offset)
      << f.path() << ": zip central directory lies outside the file (truncated?)";
  // Each entry takes at least 46 bytes of the directory: a larger count is a lie.
  GLMPIPE_CHECK(*entries <= *cd_size / 46)
      << f.path() << ": zip directory claims " << *entries << " entries in " << *cd_size << " bytes";
}

// zip64 extended information of one central-directory entry: only the fields whose 32-bit value is
// 0xFFFFFFFF, in this order. `x`..`xend` is the entry's extra field.
void read_zip64_extra(const MappedFile& f, const uint8_t* x, const uint8_t* xend, ZipEntry& e, uint64_t* local) {
  while (xend - x >= 4) {
    const uint16_t id = rd<uint16_t>(x), len = rd<uint16_t>(x + 2);
    const uint8_t* v = x + 4;
    const uint8_t* vend = v + std::min<ptrdiff_t>(len, xend - v);
    if (id == 0x0001) {
      auto next = [&](uint64_t* field) {
        if (*field != 0xFFFFFFFF) return;
        GLMPIPE_CHECK(vend - v >= 8) << f.path() << ": bad zip64 extra field for " << e.name;
        *field = rd<uint64_t>(v);
        v += 8;
      };
      next(&e.size);
      next(&e.comp_size);
      next(local);
    }
    x = vend;
  }
}

}  // namespace

std::vector<ZipEntry> read_zip_directory(const MappedFile& f) {
  uint64_t entries = 0, cd_offset = 0, cd_size = 0;
  find_directory(f, &entries, &cd_offset, &cd_size);
  const uint8_t* d = f.data();
  const uint64_t n = f.size();
  const uint64_t cd_end = cd_offset + cd_size;  // <= n, checked above
  std::vector<ZipEntry> out;
  uint64_t pos = cd_offset;
  for (uint64_t i = 0; i < entries; ++i) {
    GLMPIPE_CHECK(cd_end - pos >= 46 && rd<uint32_t>(d + pos) == kCentralSig)
        << f.path() << ": corrupt zip central directory entry " << i;
    const uint8_t* c = d + pos;
    ZipEntry e;
    e.method = rd<uint16_t>(c + 10);
    e.comp_size = rd<uint32_t>(c + 20);
    e.size = rd<uint32_t>(c + 24);
    const uint64_t nlen = rd<uint16_t>(c + 28), xlen = rd<uint16_t>(c + 30), clen = rd<uint16_t>(c + 32);
    uint64_t local = rd<uint32_t>(c + 42);
    GLMPIPE_CHECK(cd_end - pos >= 46 + nlen + xlen + clen) << f.path() << ": corrupt zip central directory entry " << i;
    e.name.assign(reinterpret_cast<const char*>(c + 46), nlen);
    read_zip64_extra(f, c + 46 + nlen, c + 46 + nlen + xlen, e, &local);
    GLMPIPE_CHECK((CheckedU64(local) + 30).fits(n) && rd<uint32_t>(d + local) == kLocalSig)
        << f.path() << ": zip record " << e.name << " has a bad local header (offset " << local << " of " << n
        << " bytes; truncated file?)";
    const CheckedU64 data = CheckedU64(local) + 30 + rd<uint16_t>(d + local + 26) + rd<uint16_t>(d + local + 28);
    const uint64_t stored = e.method == 0 ? e.size : e.comp_size;  // bytes in the file
    GLMPIPE_CHECK(data.fits(n) && (data + stored).fits(n))
        << f.path() << ": zip record " << e.name << " (" << stored << " bytes at offset " << data.saturated()
        << ") extends past the end of the file (" << n << " bytes): truncated shard?";
    e.data_offset = data.value();
    out.push_back(std::move(e));
    pos += 46 + nlen + xlen + clen;
  }
  return out;
}

namespace {

// Storage key -> (dtype, numel) of the first tensor that names it: every view of one storage must agree.
using StorageTypes = std::map<std::string, std::pair<at::ScalarType, int64_t>>;

TensorLocation locate(const MappedFile& f, const std::string& file_name, const PickledTensor& t,
                      const ZipEntry& r, const std::string& record, StorageTypes& storages) {
  GLMPIPE_CHECK(r.method == 0) << f.path() << ": tensor " << t.name << ": storage record " << record << " is compressed";
  auto [it, fresh] = storages.emplace(t.storage_key, std::make_pair(t.dtype, t.storage_numel));
  GLMPIPE_CHECK(fresh || it->second == std::make_pair(t.dtype, t.storage_numel))
      << f.path() << ": tensor " << t.name << ": storage " << t.storage_key << " is declared as " << t.storage_numel
      << " x " << t.dtype << " here but " << it->second.second << " x " << it->second.first << " by another tensor";
  const uint64_t item = c10::elementSize(t.dtype);
  const CheckedU64 storage_bytes = CheckedU64::from(t.storage_numel) * item;
  GLMPIPE_CHECK(storage_bytes.ok() && storage_bytes.value() == r.size)
      << f.path() << ": tensor " << t.name << ": storage of " << t.storage_numel << " x " << t.dtype << " ("
      << storage_bytes.saturated() << " bytes) does not match record " << record << " (" << r.size
      << " bytes): dtype or size does not match the data";
  TensorLocation loc;
  loc.info.name = t.name;
  loc.info.dtype = t.dtype;
  loc.info.shape = t.shape;
  loc.info.file = file_name;
  loc.strides = t.strides;
  const CheckedU64 first = CheckedU64(r.data_offset) + CheckedU64::from(t.storage_offset) * item;
  GLMPIPE_CHECK(first.ok()) << f.path() << ": tensor " << t.name << ": storage offset " << t.storage_offset
                            << " is negative or overflows";
  loc.data_offset = first.value();
  loc.record_begin = r.data_offset;
  loc.record_end = r.data_offset + r.size;  // <= file size (read_zip_directory)
  check_tensor_in_file(&loc, f.size(), f.path());
  return loc;
}

}  // namespace

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
  std::vector<PickledTensor> pickled = unpickle_state_dict(f.data() + p.data_offset, p.size, f.path());

  std::vector<TensorLocation> out;
  StorageTypes storages;
  for (const auto& t : pickled) {
    const std::string record = stem + "/data/" + t.storage_key;
    auto it = by_name.find(record);
    GLMPIPE_CHECK(it != by_name.end()) << f.path() << ": tensor " << t.name << ": storage record " << record << " missing";
    out.push_back(locate(f, file_name, t, *it->second, record, storages));
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
