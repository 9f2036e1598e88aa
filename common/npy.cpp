#include "common/npy.h"

#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>

#include "common/error.h"

namespace glmpipe {

namespace {
const char* descr_of(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "<f4";
    case at::kDouble: return "<f8";
    case at::kInt: return "<i4";
    case at::kLong: return "<i8";
    default: return nullptr;
  }
}
}  // namespace

void save_npy(const std::string& path, const at::Tensor& tensor) {
  auto t = tensor.contiguous().cpu();
  const char* descr = descr_of(t.scalar_type());
  GLMPIPE_CHECK(descr) << path << ": cannot write dtype " << t.scalar_type() << " to .npy";
  std::ostringstream shape;
  shape << "(";
  for (int64_t i = 0; i < t.dim(); ++i) shape << t.size(i) << (t.dim() == 1 || i + 1 < t.dim() ? "," : "");
  shape << ")";
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape.str() + ", }";
  // magic(6) + version(2) + len(2) + header, padded with spaces to a multiple of 64, ending in \n.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    GLMPIPE_CHECK(f) << "cannot write " << tmp;
    f.write("\x93NUMPY\x01\x00", 8);
    uint16_t len = static_cast<uint16_t>(header.size());
    f.write(reinterpret_cast<const char*>(&len), 2);
    f << header;
    f.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
    GLMPIPE_CHECK(f.good()) << "write failed: " << tmp;
  }
  GLMPIPE_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0) << "cannot rename " << tmp << " to " << path;
}

at::Tensor load_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  GLMPIPE_CHECK(f) << "cannot open " << path;
  char magic[8];
  f.read(magic, 8);
  GLMPIPE_CHECK(f && std::string(magic, 6) == "\x93NUMPY") << path << ": not a .npy file";
  uint16_t len = 0;
  f.read(reinterpret_cast<char*>(&len), 2);
  std::string header(len, ' ');
  f.read(header.data(), len);
  std::smatch m;
  GLMPIPE_CHECK(std::regex_search(header, m, std::regex("'descr': '([<|][fi][48])'"))) << path << ": unsupported descr";
  const std::string descr = m[1];
  at::ScalarType dt = descr == "<f4" ? at::kFloat : descr == "<f8" ? at::kDouble : descr == "<i4" ? at::kInt : at::kLong;
  GLMPIPE_CHECK(header.find("'fortran_order': False") != std::string::npos) << path << ": fortran order unsupported";
  GLMPIPE_CHECK(std::regex_search(header, m, std::regex("'shape': \\(([0-9, ]*)\\)"))) << path << ": no shape";
  std::vector<int64_t> shape;
  std::string dims = m[1];
  std::regex num("[0-9]+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator(); ++it)
    shape.push_back(std::stoll(it->str()));
  auto t = at::empty(shape, dt);
  f.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  GLMPIPE_CHECK(f) << path << ": truncated data";
  return t;
}

}  // namespace glmpipe
