// Checked 64-bit arithmetic for every size and offset read from a file (safetensors, zip/zip64,
// pickle) and for the planner's byte counts. A Checked<T> carries a sticky overflow flag: any add or
// multiply that wraps, and any conversion of a negative value to unsigned, poisons the result and
// everything computed from it. The caller tests ok() / fits() once and writes the error that names
// its file and field:
//
//   Checked<uint64_t> end = Checked<uint64_t>(base) + off;   // base + off, wrap-safe
//   GLMPIPE_CHECK(end.fits(file.size())) << path << ": tensor " << name << " lies outside the file";
//
// saturated() gives INT64_MAX / UINT64_MAX for a poisoned value (the planner's "never fits").
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

namespace glmpipe {

template <typename T>
class Checked {
  static_assert(std::is_integral<T>::value, "Checked<T> needs an integer type");

 public:
  constexpr Checked() = default;
  constexpr Checked(T v) : v_(v) {}  // NOLINT: implicit, so that `Checked<T>(a) + b` reads naturally
  // From another integer type: poisoned when the value does not fit T (e.g. a negative int64 -> u64).
  template <typename U, typename = std::enable_if_t<std::is_integral<U>::value && !std::is_same<U, T>::value>>
  static Checked from(U u) {
    Checked r;
    r.bad_ = __builtin_add_overflow(u, U{0}, &r.v_);  // converts with an overflow check
    return r;
  }
  static Checked poisoned() {
    Checked r;
    r.bad_ = true;
    return r;
  }

  Checked operator+(Checked o) const {
    Checked r;
    r.bad_ = bad_ || o.bad_ || __builtin_add_overflow(v_, o.v_, &r.v_);
    return r;
  }
  Checked operator-(Checked o) const {
    Checked r;
    r.bad_ = bad_ || o.bad_ || __builtin_sub_overflow(v_, o.v_, &r.v_);
    return r;
  }
  Checked operator*(Checked o) const {
    Checked r;
    r.bad_ = bad_ || o.bad_ || __builtin_mul_overflow(v_, o.v_, &r.v_);
    return r;
  }
  Checked& operator+=(Checked o) { return *this = *this + o; }
  Checked& operator*=(Checked o) { return *this = *this * o; }

  bool ok() const { return !bad_; }
  // ok() and value <= limit.
  bool fits(T limit) const { return !bad_ && v_ <= limit; }
  // The value; only meaningful when ok().
  T value() const { return v_; }
  T saturated() const { return bad_ ? std::numeric_limits<T>::max() : v_; }

 private:
  T v_ = 0;
  bool bad_ = false;
};

using CheckedU64 = Checked<uint64_t>;
using CheckedI64 = Checked<int64_t>;

// Saturating helpers for non-negative byte counts (the planner): INT64_MAX means "does not fit".
inline int64_t sat_add(int64_t a, int64_t b) { return (CheckedI64(a) + b).saturated(); }
inline int64_t sat_mul(int64_t a, int64_t b) { return (CheckedI64(a) * b).saturated(); }

}  // namespace glmpipe
