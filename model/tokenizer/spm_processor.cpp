#include "model/tokenizer/spm_processor.h"

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>

#include "common/error.h"

#ifndef GLMPIPE_SPM_SHIM_BUILD_PATH
#define GLMPIPE_SPM_SHIM_BUILD_PATH ""
#endif

namespace glmpipe {

namespace {

constexpr const char* kShimFile = "libglmpipe_spm.so";
constexpr int kShimAbi = 1;
constexpr size_t kErrLen = 1024;

// Function table of model/spm/spm_shim.cc (see the comments there).
struct ShimApi {
  void* lib = nullptr;
  std::string path;
  int (*abi_version)();
  void* (*load)(const char*, char*, size_t);
  void (*free_model)(void*);
  void (*free_buffer)(void*);
  int (*piece_size)(const void*);
  int (*piece_to_id)(const void*, const char*);
  int (*id_to_piece)(const void*, int, char**, size_t*);
  int (*piece_type)(const void*, int);
  int (*encode)(const void*, const char*, size_t, int**, size_t*, char*, size_t);
  int (*decode)(const void*, const int*, size_t, char**, size_t*, char*, size_t);
};

bool is_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string exe_dir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  std::string s(buf, size_t(n));
  auto slash = s.rfind('/');
  return slash == std::string::npos ? "" : s.substr(0, slash);
}

template <typename F>
void bind(void* lib, const std::string& path, const char* name, F* fn) {
  *fn = reinterpret_cast<F>(::dlsym(lib, name));
  GLMPIPE_CHECK(*fn != nullptr) << "sentencepiece shim " << path << " lacks symbol " << name;
}

const ShimApi& shim() {
  static std::once_flag once;
  static ShimApi api;
  static std::string failure;
  std::call_once(once, [] {
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("GLMPIPE_SPM_SHIM"); env && *env) candidates.push_back(env);
    if (auto dir = exe_dir(); !dir.empty()) candidates.push_back(dir + "/" + kShimFile);
    if (*GLMPIPE_SPM_SHIM_BUILD_PATH) candidates.push_back(GLMPIPE_SPM_SHIM_BUILD_PATH);
    std::string tried;
    for (const auto& c : candidates) {
      if (!is_file(c)) {
        tried += "\n  " + c + ": no such file";
        continue;
      }
      void* lib = ::dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (!lib) {
        const char* e = ::dlerror();
        tried += "\n  " + c + ": " + (e ? e : "dlopen failed");
        continue;
      }
      api.lib = lib;
      api.path = c;
      break;
    }
    if (!api.lib) {
      failure = "cannot load the sentencepiece shim " + std::string(kShimFile) +
                " (set GLMPIPE_SPM_SHIM to its path); tried:" + tried;
      return;
    }
    try {
      bind(api.lib, api.path, "glmpipe_spm_abi_version", &api.abi_version);
      GLMPIPE_CHECK(api.abi_version() == kShimAbi)
          << "sentencepiece shim " << api.path << " has ABI version " << api.abi_version()
          << ", expected " << kShimAbi << " (stale build?)";
      bind(api.lib, api.path, "glmpipe_spm_load", &api.load);
      bind(api.lib, api.path, "glmpipe_spm_free", &api.free_model);
      bind(api.lib, api.path, "glmpipe_spm_free_buffer", &api.free_buffer);
      bind(api.lib, api.path, "glmpipe_spm_piece_size", &api.piece_size);
      bind(api.lib, api.path, "glmpipe_spm_piece_to_id", &api.piece_to_id);
      bind(api.lib, api.path, "glmpipe_spm_id_to_piece", &api.id_to_piece);
      bind(api.lib, api.path, "glmpipe_spm_piece_type", &api.piece_type);
      bind(api.lib, api.path, "glmpipe_spm_encode", &api.encode);
      bind(api.lib, api.path, "glmpipe_spm_decode", &api.decode);
    } catch (const Error& e) {
      failure = e.what();
      api.lib = nullptr;
    }
  });
  if (!api.lib) throw Error(failure);
  return api;
}

}  // namespace

struct SpmProcessor::Model {
  const ShimApi* api = nullptr;
  void* handle = nullptr;
  ~Model() {
    if (handle) api->free_model(handle);
  }
};

SpmProcessor SpmProcessor::load(const std::string& model_path) {
  GLMPIPE_CHECK(is_file(model_path)) << "tokenizer model " << model_path << " does not exist";
  const ShimApi& api = shim();
  char err[kErrLen] = {0};
  void* handle = api.load(model_path.c_str(), err, sizeof(err));
  GLMPIPE_CHECK(handle != nullptr) << "tokenizer model " << model_path << ": " << err;
  SpmProcessor p;
  p.model_ = std::make_shared<Model>();
  p.model_->api = &api;
  p.model_->handle = handle;
  p.path_ = model_path;
  return p;
}

std::vector<int> SpmProcessor::encode(const std::string& text) const {
  const ShimApi& api = *model_->api;
  char err[kErrLen] = {0};
  int* raw = nullptr;
  size_t n = 0;
  GLMPIPE_CHECK(api.encode(model_->handle, text.data(), text.size(), &raw, &n, err, sizeof(err)) == 0)
      << "tokenizer " << path_ << ": " << err;
  std::vector<int> ids(raw, raw + n);
  api.free_buffer(raw);
  return ids;
}

std::string SpmProcessor::decode(const std::vector<int>& ids) const {
  const ShimApi& api = *model_->api;
  char err[kErrLen] = {0};
  char* raw = nullptr;
  size_t len = 0;
  GLMPIPE_CHECK(api.decode(model_->handle, ids.data(), ids.size(), &raw, &len, err, sizeof(err)) == 0)
      << "tokenizer " << path_ << ": " << err;
  std::string text(raw, len);
  api.free_buffer(raw);
  return text;
}

int SpmProcessor::piece_size() const { return model_->api->piece_size(model_->handle); }

std::string SpmProcessor::id_to_piece(int id) const {
  char* raw = nullptr;
  size_t len = 0;
  if (model_->api->id_to_piece(model_->handle, id, &raw, &len) != 0) return "";
  std::string s(raw, len);
  model_->api->free_buffer(raw);
  return s;
}

int SpmProcessor::piece_to_id(const std::string& piece) const {
  return model_->api->piece_to_id(model_->handle, piece.c_str());
}

SpmProcessor::PieceType SpmProcessor::piece_type(int id) const {
  int t = model_->api->piece_type(model_->handle, id);
  return t < 1 || t > 6 ? PieceType::kUnknown : static_cast<PieceType>(t);
}

std::string spm_piece_bytes(const std::string& p) {
  if (p.size() == 6 && p.rfind("<0x", 0) == 0 && p.back() == '>')
    return std::string(1, static_cast<char>(std::strtol(p.substr(3, 2).c_str(), nullptr, 16)));
  static const std::string kSpace = "\xE2\x96\x81";  // ▁
  std::string out;
  for (size_t i = 0; i < p.size();) {
    if (p.compare(i, kSpace.size(), kSpace) == 0) {
      out += ' ';
      i += kSpace.size();
    } else {
      out += p[i++];
    }
  }
  return out;
}

}  // namespace glmpipe
