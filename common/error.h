// One way to fail: glmpipe::Error, thrown by GLMPIPE_CHECK with file:line and a streamed message.
//
//   GLMPIPE_CHECK(shape == expected) << path << ": tensor " << name << " has shape " << ...;
//   GLMPIPE_FAIL() << "unsupported dtype " << dtype;
//
// Messages should name the file, key, tensor or rank that is wrong: they are what the user sees.
// main() catches Error, logs it with the rank prefix and exits non-zero (MPI_Abort under mpirun).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace glmpipe {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
// Collects a message and throws glmpipe::Error from its destructor (the macro's temporary dies at
// the end of the full expression, after all `<<` have run).
class ErrorBuilder {
 public:
  ErrorBuilder(const char* file, int line, const char* cond) {
    if (cond) where_ << "check failed (" << cond << ") ";
    loc_ = std::string(file) + ":" + std::to_string(line);
  }
  ErrorBuilder(const ErrorBuilder&) = delete;
  ErrorBuilder& operator=(const ErrorBuilder&) = delete;
  ~ErrorBuilder() noexcept(false) { throw Error(msg_.str() + "  [" + where_.str() + "at " + loc_ + "]"); }
  std::ostream& stream() { return msg_; }

 private:
  std::ostringstream msg_;
  std::ostringstream where_;
  std::string loc_;
};
}  // namespace detail

}  // namespace glmpipe

#define GLMPIPE_CHECK(cond) \
  if (cond) {               \
  } else                    \
    ::glmpipe::detail::ErrorBuilder(__FILE__, __LINE__, #cond).stream()

#define GLMPIPE_FAIL() ::glmpipe::detail::ErrorBuilder(__FILE__, __LINE__, nullptr).stream()
