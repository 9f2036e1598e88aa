// SpmProcessor: a loaded sentencepiece model, reached through the shim libglmpipe_spm.so.
//
// sentencepiece is never linked into our processes (its protobuf clashes with libtorch's): the
// work is done by the shim (model/spm/spm_shim.cc), dlopen()ed with RTLD_DEEPBIND from, in order:
// $GLMPIPE_SPM_SHIM (a file), the directory of the running executable, and the build-tree path
// GLMPIPE_SPM_SHIM_BUILD_PATH. Copies share the loaded model; thread-safe for concurrent use.
// Used by the ChatGLM-6B tokenizer (ice_text.model) and the ChatGLM2/3 one (tokenizer.model).
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace glmpipe {

class SpmProcessor {
 public:
  enum class PieceType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

  // Throws glmpipe::Error naming the path if the file or the shim is missing or invalid.
  static SpmProcessor load(const std::string& model_path);

  // Plain sentencepiece encode/decode (no BOS/EOS); decode needs every id < piece_size().
  std::vector<int> encode(const std::string& text) const;
  std::string decode(const std::vector<int>& ids) const;

  int piece_size() const;
  std::string id_to_piece(int id) const;            // "" for ids out of range
  int piece_to_id(const std::string& piece) const;  // -1 if absent
  PieceType piece_type(int id) const;               // kUnknown for ids out of range
  const std::string& path() const { return path_; }

  SpmProcessor() = default;  // empty; only load() gives a usable one

 private:
  struct Model;
  std::shared_ptr<Model> model_;
  std::string path_;
};

// The bytes of a normal sentencepiece piece: "<0xNN>" → that byte, "▁" → a space (logprobs text).
std::string spm_piece_bytes(const std::string& piece);

}  // namespace glmpipe
