#include "model/tokenizer.h"

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

constexpr int kMaxBlank = 80;

std::string blank_token(int k) { return "<|blank_" + std::to_string(k) + "|>"; }

// Single pass, equal to HF's replace("<n>"), replace("<|tab|>"), replace("<|blank_k|>") for
// k = 2..80 (the tokens cannot overlap: each spans one '<' to the next '>').
std::string postprocess_whitespace(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  static const std::string kBlank = "<|blank_";
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '<') {
      if (text.compare(i, 3, "<n>") == 0) {
        out += '\n';
        i += 3;
        continue;
      }
      if (text.compare(i, 7, "<|tab|>") == 0) {
        out += '\t';
        i += 7;
        continue;
      }
      if (text.compare(i, kBlank.size(), kBlank) == 0) {
        size_t j = i + kBlank.size();
        int k = 0, digits = 0;
        while (j < text.size() && digits < 3 && text[j] >= '0' && text[j] <= '9')
          k = k * 10 + (text[j++] - '0'), ++digits;
        // Only the canonical spellings 2..80 (no leading zero), as the HF loop.
        if (digits > 0 && text[i + kBlank.size()] != '0' && k >= 2 && k <= kMaxBlank &&
            text.compare(j, 2, "|>") == 0) {
          out.append(size_t(k), ' ');
          i = j + 2;
          continue;
        }
      }
    }
    out += text[i++];
  }
  return out;
}

}  // namespace

namespace detail {
struct SpmModel {
  const ShimApi* api = nullptr;
  void* handle = nullptr;
  ~SpmModel() {
    if (handle) api->free_model(handle);
  }
};
}  // namespace detail

ChatGLMTokenizer ChatGLMTokenizer::load(const std::string& model_path) {
  GLMPIPE_CHECK(is_file(model_path)) << "tokenizer model " << model_path << " does not exist";
  const ShimApi& api = shim();
  char err[kErrLen] = {0};
  void* handle = api.load(model_path.c_str(), err, sizeof(err));
  GLMPIPE_CHECK(handle != nullptr) << "tokenizer model " << model_path << ": " << err;
  ChatGLMTokenizer tok;
  tok.model_ = std::make_shared<detail::SpmModel>();
  tok.model_->api = &api;
  tok.model_->handle = handle;
  tok.path_ = model_path;
  tok.vocab_size_ = api.piece_size(handle);
  tok.gmask_ = tok.piece_to_id("[gMASK]");
  tok.mask_ = tok.piece_to_id("[MASK]");
  tok.sop_ = tok.piece_to_id("<sop>");
  tok.eop_ = tok.piece_to_id("<eop>");
  tok.pad_ = tok.piece_to_id("<pad>");
  GLMPIPE_CHECK(tok.gmask_ >= 0 && tok.sop_ >= 0 && tok.eop_ >= 0)
      << "tokenizer model " << model_path
      << " has no [gMASK]/<sop>/<eop> pieces: not a ChatGLM-6B ice_text.model";
  return tok;
}

// Single pass, equal to HF's replace("\n"), replace("\t"), then replace(" " * k) for k = 80..2:
// a run of L spaces becomes L / 80 <|blank_80|>, then <|blank_r|> (r = L % 80 >= 2) or one space.
std::string ChatGLMTokenizer::preprocess(const std::string& text) {
  std::string s;
  s.reserve(text.size() + 16);
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (c == '\n') {
      s += "<n>";
      ++i;
    } else if (c == '\t') {
      s += "<|tab|>";
      ++i;
    } else if (c == ' ') {
      size_t run = 0;
      while (i < text.size() && text[i] == ' ') ++run, ++i;
      for (; run >= size_t(kMaxBlank); run -= kMaxBlank) s += blank_token(kMaxBlank);
      if (run >= 2) s += blank_token(int(run));
      else if (run == 1) s += ' ';
    } else {
      s += c;
      ++i;
    }
  }
  return s;
}

std::vector<int> ChatGLMTokenizer::encode(const std::string& text, bool add_special) const {
  const std::string pre = preprocess(text);
  const ShimApi& api = *model_->api;
  char err[kErrLen] = {0};
  int* raw = nullptr;
  size_t n = 0;
  GLMPIPE_CHECK(api.encode(model_->handle, pre.data(), pre.size(), &raw, &n, err, sizeof(err)) == 0)
      << "tokenizer " << path_ << ": " << err;
  std::vector<int> ids(raw, raw + n);
  api.free_buffer(raw);
  if (add_special) {
    ids.push_back(gmask_);
    ids.push_back(sop_);
  }
  return ids;
}

std::string ChatGLMTokenizer::decode(const std::vector<int>& ids) const {
  std::vector<int> kept;
  kept.reserve(ids.size());
  for (int id : ids)
    if (id != pad_ && id >= 0 && id < vocab_size_) kept.push_back(id);
  const ShimApi& api = *model_->api;
  char err[kErrLen] = {0};
  char* raw = nullptr;
  size_t len = 0;
  GLMPIPE_CHECK(api.decode(model_->handle, kept.data(), kept.size(), &raw, &len, err, sizeof(err)) == 0)
      << "tokenizer " << path_ << ": " << err;
  std::string text(raw, len);
  api.free_buffer(raw);
  return postprocess_whitespace(text);
}

std::string ChatGLMTokenizer::id_to_piece(int id) const {
  char* raw = nullptr;
  size_t len = 0;
  if (model_->api->id_to_piece(model_->handle, id, &raw, &len) != 0) return "";
  std::string s(raw, len);
  model_->api->free_buffer(raw);
  return s;
}

int ChatGLMTokenizer::piece_to_id(const std::string& piece) const {
  return model_->api->piece_to_id(model_->handle, piece.c_str());
}

ChatGLMTokenizer::PieceType ChatGLMTokenizer::piece_type(int id) const {
  int t = model_->api->piece_type(model_->handle, id);
  return t < 1 || t > 6 ? PieceType::kUnknown : static_cast<PieceType>(t);
}

// ---- streaming -----------------------------------------------------------------------------

size_t stable_utf8_prefix(const std::string& text) {
  size_t end = text.size();
  for (;;) {
    // Drop an incomplete trailing UTF-8 sequence (defensive: sentencepiece emits U+FFFD instead).
    size_t start = end;
    int back = 0;
    while (start > 0 && back < 4 && (static_cast<unsigned char>(text[start - 1]) & 0xC0) == 0x80) {
      --start;
      ++back;
    }
    if (start > 0) {
      unsigned char lead = static_cast<unsigned char>(text[start - 1]);
      int need = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
      if (lead >= 0xC0 && back < need) {
        end = start - 1;
        continue;
      }
    }
    // Drop a trailing U+FFFD (EF BF BD): the rest of the character may still come.
    if (end >= 3 && text.compare(end - 3, 3, "\xEF\xBF\xBD") == 0) {
      end -= 3;
      continue;
    }
    return end;
  }
}

std::string StreamDecoder::push(int id) {
  ids_.push_back(id);
  const std::string text = tok_.decode(ids_);
  const size_t stable = stable_utf8_prefix(text);
  if (stable <= emitted_) return "";
  std::string out = text.substr(emitted_, stable - emitted_);
  emitted_ = stable;
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  if (!ids_.empty()) {
    const std::string text = tok_.decode(ids_);
    if (text.size() > emitted_) out = text.substr(emitted_);
  }
  ids_.clear();
  emitted_ = 0;
  return out;
}

}  // namespace glmpipe
