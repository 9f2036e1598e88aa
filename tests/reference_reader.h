// Reader of the reference-tensor files in ../shared/data/reference (spec §5.1): little-endian
// int32 ids and fp32 tensors back to back, read in the order the file's generator wrote them.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace glmpipe::test {

class ReferenceReader {
 public:
  explicit ReferenceReader(const std::string& path) : f_(path, std::ios::binary) {}
  bool ok() const { return static_cast<bool>(f_); }
  at::Tensor floats(std::vector<int64_t> shape) {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    auto t = at::empty(shape, at::kFloat);
    f_.read(reinterpret_cast<char*>(t.data_ptr<float>()), n * 4);
    EXPECT_TRUE(f_) << "reference data truncated";
    return t;
  }
  std::vector<int64_t> ints(int64_t n) {
    std::vector<int32_t> v(n);
    f_.read(reinterpret_cast<char*>(v.data()), n * 4);
    return std::vector<int64_t>(v.begin(), v.end());
  }
  bool at_end() { return f_.peek() == EOF; }

 private:
  std::ifstream f_;
};

}  // namespace glmpipe::test
