// Small text helpers the chat formats share (Python str semantics where the official code uses them).
#pragma once

#include <string>
#include <vector>

namespace glmpipe {

// Python str.strip(): removes leading/trailing Unicode whitespace (UTF-8 code points).
std::string py_strip(const std::string& s);
// Python str.split(sep) (sep non-empty).
std::vector<std::string> py_split(const std::string& s, const std::string& sep);
void replace_all_in(std::string& s, const std::string& from, const std::string& to);

}  // namespace glmpipe
