// torch.save archives (PyTorch >= 1.6 "zip" format): a zip file whose records are all STORED
// (uncompressed) under one top-level folder <stem>/:
//   <stem>/data.pkl      the pickled state dict (see pickle.h)
//   <stem>/data/<key>    raw little-endian bytes of storage <key>, 64-byte aligned in the file
//   <stem>/version       "3\n"          <stem>/byteorder   "little" (newer PyTorch)
// Alignment comes from padding the local header's extra field with an "FB" block, as PyTorch's
// writer does. Reading parses only the central directory, local headers and data.pkl; zip64 end
// records and zip64 extra fields (files > 4 GB) are understood. Writing produces files below 4 GB.
// reference: PKWARE APPNOTE.TXT 6.3 (zip format); caffe2/serialize/inline_container.cc (layout).
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "checkpoint/mapped_file.h"

namespace glmpipe {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;       // 0 = STORED
  uint64_t size = 0;         // uncompressed size
  uint64_t comp_size = 0;
  uint64_t data_offset = 0;  // first byte of the record's data in the file
};

// Central directory of a mapped zip file. Errors name the file (not a zip, truncated, bad entry).
std::vector<ZipEntry> read_zip_directory(const MappedFile& file);

// Tensors of a torch.save'd state dict, located inside the mapping. `file_name` goes into
// TensorInfo::file. Errors name the file and, where one is involved, the tensor.
std::vector<TensorLocation> read_torch_zip_index(const MappedFile& file, const std::string& file_name);

// Writes a zip of STORED records with 64-byte aligned data (the torch.save layout).
class ZipWriter {
 public:
  explicit ZipWriter(const std::string& path) : file_(path) {}
  void add(const std::string& name, const void* data, size_t size);
  void finish();  // central directory + end record, then atomic rename

 private:
  struct Entry {
    std::string name;
    uint32_t crc;
    uint64_t size, local_offset;
  };
  AtomicFile file_;
  std::vector<Entry> entries_;
};

// torch.save(OrderedDict(tensors), path): one storage per tensor, readable by Python torch.load.
void write_torch_save(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors);

uint32_t crc32_of(const void* data, size_t size, uint32_t crc = 0);

}  // namespace glmpipe
