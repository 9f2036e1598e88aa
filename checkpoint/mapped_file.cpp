// MappedFile (mmap/madvise), dtype name tables, atomic file writes.
#include "checkpoint/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "common/checked.h"
#include "common/error.h"

namespace glmpipe {

namespace {
const char* file_kind(mode_t m) {
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISDIR(m)) return "a directory";
  return "not a regular file";
}
}  // namespace

void check_regular_file(const std::string& path, const char* what) {
  struct stat st;
  GLMPIPE_CHECK(::stat(path.c_str(), &st) == 0) << path << ": cannot open " << what << ": " << std::strerror(errno);
  GLMPIPE_CHECK(S_ISREG(st.st_mode)) << path << ": " << what << " is " << file_kind(st.st_mode)
                                     << ", not a regular file";
}

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  check_regular_file(path, "weights file");
  // O_NONBLOCK: should the path be swapped for a FIFO after the stat above, open() still returns.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  GLMPIPE_CHECK(fd >= 0) << path << ": cannot open: " << std::strerror(errno);
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    int err = errno;
    ::close(fd);
    GLMPIPE_CHECK(S_ISREG(st.st_mode)) << path << ": weights file is " << file_kind(st.st_mode)
                                       << ", not a regular file";
    GLMPIPE_FAIL() << path << ": cannot stat: " << std::strerror(err);
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    if (p == MAP_FAILED) ::close(fd);
    GLMPIPE_CHECK(p != MAP_FAILED) << path << ": mmap failed: " << std::strerror(err);
    f->data_ = static_cast<const uint8_t*>(p);
    f->fd_ = fd;
  } else {
    ::close(fd);
  }
  return f;
}

std::shared_ptr<MappedFile> MappedFile::wrap(const uint8_t* data, uint64_t size, const std::string& path) {
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->data_ = data;
  f->size_ = size;
  f->owned_ = false;
  return f;
}

MappedFile::~MappedFile() {
  if (data_ && owned_) ::munmap(const_cast<uint8_t*>(data_), size_);
  if (fd_ >= 0) ::close(fd_);
}

void MappedFile::populate(uint64_t offset, uint64_t len) const {
  if (!data_ || !owned_ || len == 0) return;
  GLMPIPE_CHECK(offset <= size_ && len <= size_ - offset)
      << path_ << ": bytes [" << offset << ", " << offset + len << ") lie outside the file's " << size_ << " bytes";
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t begin = offset / page * page, end = offset + len;
  constexpr int kPopulateRead = 22;  // MADV_POPULATE_READ (Linux 5.14; older headers lack the name)
  void* p = const_cast<uint8_t*>(data_) + begin;
  if (::madvise(p, end - begin, kPopulateRead) == 0) return;
  const int err = errno;
  GLMPIPE_CHECK(err == EINVAL) << path_ << ": cannot read bytes [" << offset << ", " << end << ") into memory: "
                               << std::strerror(err) << " (the file changed since it was opened?)";
  // An older kernel: fault the pages in by reading one byte of each (the file's size was checked).
  volatile uint8_t sink = 0;
  for (uint64_t o = begin; o < end; o += page) sink = sink + data_[o];
}

void MappedFile::read(uint64_t offset, uint64_t len, void* dst) const {
  GLMPIPE_CHECK(offset <= size_ && len <= size_ - offset)
      << path_ << ": bytes [" << offset << ", " << offset + len << ") lie outside the file's " << size_ << " bytes";
  if (fd_ < 0) {
    if (len > 0) std::memcpy(dst, data_ + offset, len);
    return;
  }
  auto* out = static_cast<uint8_t*>(dst);
  while (len > 0) {
    const ssize_t n = ::pread(fd_, out, std::min<uint64_t>(len, uint64_t{1} << 30), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    GLMPIPE_CHECK(n > 0) << path_ << ": cannot read bytes [" << offset << ", " << offset + len << "): "
                         << (n == 0 ? "the file is shorter than when it was opened (changed since?)" : std::strerror(errno));
    out += n;
    offset += static_cast<uint64_t>(n);
    len -= static_cast<uint64_t>(n);
  }
}

void MappedFile::release(uint64_t offset, uint64_t len) const {
  if (!data_ || !owned_ || len == 0 || offset >= size_) return;
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t begin = offset / page * page;
  uint64_t end = len > size_ - offset ? size_ : offset + len;
  end = (end + page - 1) / page * page;
  ::madvise(const_cast<uint8_t*>(data_) + begin, end - begin, MADV_DONTNEED);
}

std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i) s[i] = sat_mul(s[i + 1], shape[i + 1]);
  return s;
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n = sat_mul(n, d);
  return n;
}

bool tensor_span(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides, uint64_t item,
                 uint64_t data_offset, TensorSpan* out, std::string* why) {
  if (shape.size() != strides.size()) return *why = "has " + std::to_string(shape.size()) + " sizes but " +
                                                    std::to_string(strides.size()) + " strides", false;
  CheckedI64 numel = 1;
  CheckedU64 last = 0;  // highest element index touched, relative to element [0, ...]
  bool empty = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0 || strides[i] < 0)
      return *why = "has a negative size or stride (shape " + shape_str(shape) + ", strides " + shape_str(strides) + ")",
             false;
    numel *= shape[i];
    if (shape[i] == 0) empty = true;
    else last += CheckedU64::from(shape[i] - 1) * CheckedU64::from(strides[i]);
  }
  const CheckedI64 nbytes = numel * CheckedI64::from(item);
  const CheckedU64 end = CheckedU64(data_offset) + (last + 1) * item;
  if (!nbytes.ok() || (!empty && !end.ok()))
    return *why = "has sizes/strides whose byte extent overflows 64 bits (shape " + shape_str(shape) + ", strides " +
                  shape_str(strides) + ")",
           false;
  out->begin = data_offset;
  out->end = empty ? data_offset : end.value();
  out->nbytes = nbytes.value();
  return true;
}

void check_tensor_in_file(TensorLocation* loc, uint64_t file_size, const std::string& path) {
  TensorSpan span;
  std::string why;
  const std::string& name = loc->info.name;
  GLMPIPE_CHECK(tensor_span(loc->info.shape, loc->strides, c10::elementSize(loc->info.dtype), loc->data_offset, &span,
                            &why))
      << path << ": tensor " << name << " " << why;
  GLMPIPE_CHECK(loc->record_begin <= loc->record_end && loc->record_end <= file_size)
      << path << ": tensor " << name << " data [" << loc->record_begin << ", " << loc->record_end
      << ") lies beyond the end of the file (" << file_size << " bytes): truncated shard?";
  GLMPIPE_CHECK(span.begin >= loc->record_begin && span.end <= loc->record_end)
      << path << ": tensor " << name << " (shape " << shape_str(loc->info.shape) << ", strides "
      << shape_str(loc->strides) << ") touches bytes [" << span.begin << ", " << span.end
      << ") outside its data [" << loc->record_begin << ", " << loc->record_end << ")";
  loc->span_begin = span.begin;
  loc->span_end = span.end;
  loc->info.nbytes = span.nbytes;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

namespace {
struct DtypeName {
  at::ScalarType type;
  const char* safetensors;
  const char* storage;
};
const DtypeName kDtypes[] = {
    {at::kFloat, "F32", "FloatStorage"},  {at::kHalf, "F16", "HalfStorage"},
    {at::kBFloat16, "BF16", "BFloat16Storage"}, {at::kDouble, "F64", "DoubleStorage"},
    {at::kChar, "I8", "CharStorage"},     {at::kByte, "U8", "ByteStorage"},
    {at::kShort, "I16", "ShortStorage"},  {at::kInt, "I32", "IntStorage"},
    {at::kLong, "I64", "LongStorage"},    {at::kBool, "BOOL", "BoolStorage"},
};
}  // namespace

bool dtype_from_safetensors(const std::string& s, at::ScalarType* out) {
  for (const auto& d : kDtypes)
    if (s == d.safetensors) return *out = d.type, true;
  return false;
}
std::string dtype_to_safetensors(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (t == d.type) return d.safetensors;
  GLMPIPE_FAIL() << "dtype " << t << " cannot be written to safetensors";
  return {};
}
bool dtype_from_storage_name(const std::string& s, at::ScalarType* out) {
  for (const auto& d : kDtypes)
    if (s == d.storage) return *out = d.type, true;
  return false;
}
std::string dtype_to_storage_name(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (t == d.type) return d.storage;
  GLMPIPE_FAIL() << "dtype " << t << " cannot be written with torch.save";
  return {};
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  tmp_ = path_ + ".tmp." + std::to_string(::getpid());
  f_ = std::fopen(tmp_.c_str(), "wb");
  GLMPIPE_CHECK(f_ != nullptr) << path_ << ": cannot create " << tmp_ << ": " << std::strerror(errno);
}

AtomicFile::~AtomicFile() {
  if (f_) {
    std::fclose(f_);
    std::remove(tmp_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t n) {
  GLMPIPE_CHECK(f_ != nullptr) << path_ << ": write after commit";
  if (n == 0) return;
  GLMPIPE_CHECK(std::fwrite(data, 1, n, f_) == n) << path_ << ": write failed: " << std::strerror(errno);
  offset_ += n;
}

void AtomicFile::commit() {
  GLMPIPE_CHECK(f_ != nullptr) << path_ << ": committed twice";
  int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) {
    std::remove(tmp_.c_str());
    GLMPIPE_FAIL() << path_ << ": write failed (disk full?)";
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    int err = errno;
    std::remove(tmp_.c_str());
    GLMPIPE_FAIL() << path_ << ": rename from " << tmp_ << " failed: " << std::strerror(err);
  }
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  AtomicFile f(path);
  f.write(bytes);
  f.commit();
}

}  // namespace glmpipe
