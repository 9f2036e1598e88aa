// The sentencepiece shim: the ONLY binary of the project that links libsentencepiece.
//
// sentencepiece bundles protobuf-lite 3.14 and exports its symbols; libtorch loads protobuf 3.21.
// A process linking both crashes before main (toolchain-notes trap 3). model/tokenizer.cpp therefore
// dlopen()s this library with RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND and talks to it only through
// the plain-C interface below (no C++ types cross the boundary).
//
// Memory returned through out-pointers is malloc()ed here and must be released with
// glmpipe_spm_free_buffer(). Error strings are written into caller-provided buffers.
#include <sentencepiece_processor.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <vector>

namespace {

// Piece types as in sentencepiece's ModelProto.SentencePiece.Type.
enum PieceType : int {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct Handle {
  sentencepiece::SentencePieceProcessor sp;
  std::vector<int> types;  // per piece id, PieceType
};

void set_err(char* err, size_t err_len, const std::string& msg) {
  if (!err || err_len == 0) return;
  size_t n = msg.size() < err_len - 1 ? msg.size() : err_len - 1;
  std::memcpy(err, msg.data(), n);
  err[n] = '\0';
}

// --- a minimal protobuf wire-format reader ----------------------------------------------------
// The public sentencepiece API has no IsUserDefined(); the piece types are read straight from the
// model file: ModelProto field 1 = repeated SentencePiece {1: piece, 2: score, 3: type}.
bool read_varint(const uint8_t*& p, const uint8_t* end, uint64_t* v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64 && p < end; shift += 7) {
    uint8_t b = *p++;
    r |= uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}

bool skip_field(const uint8_t*& p, const uint8_t* end, int wire) {
  uint64_t v = 0;
  switch (wire) {
    case 0: return read_varint(p, end, &v);
    case 1: if (end - p < 8) return false; p += 8; return true;
    case 2:
      if (!read_varint(p, end, &v) || uint64_t(end - p) < v) return false;
      p += v;
      return true;
    case 5: if (end - p < 4) return false; p += 4; return true;
    default: return false;
  }
}

// Returns the type of every piece in file order (empty on parse failure).
std::vector<int> parse_piece_types(const std::string& bytes) {
  std::vector<int> types;
  const uint8_t* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const uint8_t* end = p + bytes.size();
  while (p < end) {
    uint64_t key = 0;
    if (!read_varint(p, end, &key)) return {};
    int field = int(key >> 3), wire = int(key & 7);
    if (field == 1 && wire == 2) {
      uint64_t len = 0;
      if (!read_varint(p, end, &len) || uint64_t(end - p) < len) return {};
      const uint8_t* q = p;
      const uint8_t* qend = p + len;
      int type = kNormal;  // proto default
      while (q < qend) {
        uint64_t k = 0;
        if (!read_varint(q, qend, &k)) return {};
        if ((k >> 3) == 3 && (k & 7) == 0) {
          uint64_t t = 0;
          if (!read_varint(q, qend, &t)) return {};
          type = int(t);
        } else if (!skip_field(q, qend, int(k & 7))) {
          return {};
        }
      }
      types.push_back(type);
      p = qend;
    } else if (!skip_field(p, end, wire)) {
      return {};
    }
  }
  return types;
}

template <typename T>
T* copy_out(const T* src, size_t n) {
  T* out = static_cast<T*>(std::malloc((n ? n : 1) * sizeof(T)));
  if (out && n) std::memcpy(out, src, n * sizeof(T));
  return out;
}

}  // namespace

extern "C" {

// Bumped whenever the interface below changes; tokenizer.cpp refuses other versions.
int glmpipe_spm_abi_version() { return 1; }

// Loads a .model file. Returns nullptr and writes a message into err on failure.
void* glmpipe_spm_load(const char* path, char* err, size_t err_len) {
  try {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
      set_err(err, err_len, std::string("cannot open sentencepiece model ") + path);
      return nullptr;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    std::string bytes = ss.str();
    auto h = std::make_unique<Handle>();
    auto status = h->sp.LoadFromSerializedProto(bytes);
    if (!status.ok()) {
      set_err(err, err_len, std::string("cannot load sentencepiece model ") + path + ": " +
                                status.ToString());
      return nullptr;
    }
    const int n = h->sp.GetPieceSize();
    std::vector<int> parsed = parse_piece_types(bytes);
    h->types.assign(n, kNormal);
    for (int id = 0; id < n; ++id) {
      if (h->sp.IsUnknown(id)) h->types[id] = kUnknown;
      else if (h->sp.IsControl(id)) h->types[id] = kControl;
      else if (h->sp.IsByte(id)) h->types[id] = kByte;
      else if (h->sp.IsUnused(id)) h->types[id] = kUnused;
      else if (int(parsed.size()) == n) h->types[id] = parsed[id];
    }
    return h.release();
  } catch (const std::exception& e) {
    set_err(err, err_len, std::string("sentencepiece model ") + path + ": " + e.what());
    return nullptr;
  }
}

void glmpipe_spm_free(void* handle) { delete static_cast<Handle*>(handle); }

void glmpipe_spm_free_buffer(void* buf) { std::free(buf); }

int glmpipe_spm_piece_size(const void* handle) {
  return static_cast<const Handle*>(handle)->sp.GetPieceSize();
}

// Id of a piece, or -1 if the model has no such piece.
int glmpipe_spm_piece_to_id(const void* handle, const char* piece) {
  const auto* h = static_cast<const Handle*>(handle);
  int id = h->sp.PieceToId(piece);
  if (id < 0 || id >= h->sp.GetPieceSize()) return -1;
  if (id == h->sp.unk_id() && h->sp.IdToPiece(id) != piece) return -1;
  return id;
}

// Copies the piece text of `id` into a malloc()ed buffer (*out, *out_len, not NUL-terminated
// semantics: *out_len bytes, plus a trailing NUL). Returns 0, or -1 for an id out of range.
int glmpipe_spm_id_to_piece(const void* handle, int id, char** out, size_t* out_len) {
  const auto* h = static_cast<const Handle*>(handle);
  if (id < 0 || id >= h->sp.GetPieceSize()) return -1;
  const std::string& s = h->sp.IdToPiece(id);
  *out = static_cast<char*>(std::malloc(s.size() + 1));
  if (!*out) return -1;
  std::memcpy(*out, s.data(), s.size());
  (*out)[s.size()] = '\0';
  *out_len = s.size();
  return 0;
}

// 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte; -1 for an id out of range.
int glmpipe_spm_piece_type(const void* handle, int id) {
  const auto* h = static_cast<const Handle*>(handle);
  if (id < 0 || id >= int(h->types.size())) return -1;
  return h->types[id];
}

// Encodes `len` bytes of text into ids (no BOS/EOS). Returns 0, or -1 with err set.
int glmpipe_spm_encode(const void* handle, const char* text, size_t len, int** out_ids,
                       size_t* out_n, char* err, size_t err_len) {
  try {
    const auto* h = static_cast<const Handle*>(handle);
    std::vector<int> ids;
    auto status = h->sp.Encode(std::string(text, len), &ids);
    if (!status.ok()) {
      set_err(err, err_len, "sentencepiece encode: " + status.ToString());
      return -1;
    }
    *out_ids = copy_out(ids.data(), ids.size());
    *out_n = ids.size();
    return *out_ids ? 0 : -1;
  } catch (const std::exception& e) {
    set_err(err, err_len, std::string("sentencepiece encode: ") + e.what());
    return -1;
  }
}

// Decodes ids (all must be in range) into UTF-8 text in a malloc()ed buffer (+ trailing NUL).
// Returns 0, or -1 with err set.
int glmpipe_spm_decode(const void* handle, const int* ids, size_t n, char** out, size_t* out_len,
                       char* err, size_t err_len) {
  try {
    const auto* h = static_cast<const Handle*>(handle);
    std::vector<int> v(ids, ids + n);
    for (int id : v) {
      if (id < 0 || id >= h->sp.GetPieceSize()) {
        set_err(err, err_len, "sentencepiece decode: id " + std::to_string(id) + " out of range");
        return -1;
      }
    }
    std::string text;
    auto status = h->sp.Decode(v, &text);
    if (!status.ok()) {
      set_err(err, err_len, "sentencepiece decode: " + status.ToString());
      return -1;
    }
    *out = copy_out(text.c_str(), text.size() + 1);
    *out_len = text.size();
    return *out ? 0 : -1;
  } catch (const std::exception& e) {
    set_err(err, err_len, std::string("sentencepiece decode: ") + e.what());
    return -1;
  }
}

}  // extern "C"
