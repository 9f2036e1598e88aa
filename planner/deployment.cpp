// Byte sizes for deployments: parsing "14GiB"/"15GB"/"512MiB" and printing bytes for humans.
#include <cctype>
#include <cmath>
#include <cstdio>

#include "common/error.h"
#include "planner/deployment.h"

namespace glmpipe {

int64_t parse_byte_size(const std::string& text, const std::string& what) {
  std::string s;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) s += c;
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  std::string num = s.substr(0, i), unit = s.substr(i);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double mult = -1;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kb") mult = 1e3;
  else if (unit == "m" || unit == "mb") mult = 1e6;
  else if (unit == "g" || unit == "gb") mult = 1e9;
  else if (unit == "t" || unit == "tb") mult = 1e12;
  else if (unit == "kib") mult = 1024.0;
  else if (unit == "mib") mult = double(kMiB);
  else if (unit == "gib") mult = double(kGiB);
  else if (unit == "tib") mult = double(kGiB) * 1024.0;
  bool ok = !num.empty() && num != "." && num.find('.') == num.rfind('.') && mult > 0;
  double value = ok ? std::stod(num) * mult : -1;
  GLMPIPE_CHECK(ok && value < 9.0e18)
      << what << ": \"" << text
      << "\" is not a size (allowed: bytes as an integer, or a number with B, KB, MB, GB, TB, KiB, "
         "MiB, GiB, TiB, e.g. 14GiB, 15GB, 512MiB)";
  return static_cast<int64_t>(std::llround(value));
}

std::string format_bytes(int64_t bytes) {
  char buf[64];
  double b = static_cast<double>(bytes);
  double a = std::fabs(b);
  if (a >= double(kGiB)) std::snprintf(buf, sizeof buf, "%.2f GiB", b / double(kGiB));
  else if (a >= double(kMiB)) std::snprintf(buf, sizeof buf, "%.1f MiB", b / double(kMiB));
  else if (a >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  else std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  return buf;
}

}  // namespace glmpipe
