// Minimal unpickler / pickler for torch.save state dicts (see pickle.h for the allowed subset).
#include "checkpoint/pickle.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <unordered_map>

#include "checkpoint/mapped_file.h"
#include "common/error.h"

namespace glmpipe {
namespace {

// Values live in the Unpickler's arena (a deque: stable addresses, destroyed one by one), so that
// containers hold plain pointers: teardown never recurses however deep the nesting, and a list that
// contains itself (APPEND of a memoized list) is no leak.
struct Value {
  enum Kind : uint8_t { kNone, kBool, kInt, kFloat, kString, kTuple, kList, kDict, kGlobal, kStorage, kTensor };
  Kind kind = kNone;
  uint16_t depth = 1;  // 1 + the deepest child at the time it was added (a plausibility bound)
  int64_t i = 0;
  std::string s;  // string, or "module.name" for a global
  std::vector<Value*> items;                    // tuple / list
  std::vector<std::pair<Value*, Value*>> dict;  // dict, insertion order
  std::unique_ptr<PickledTensor> tensor;        // storage (key, dtype, numel) / tensor
};
using ValuePtr = Value*;

bool allowed_global(const std::string& g) {
  static const char* kAllowed[] = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                                   "torch._utils._rebuild_parameter",
                                   "torch._utils._rebuild_parameter_with_state"};
  for (const char* a : kAllowed)
    if (g == a) return true;
  at::ScalarType t;
  return g.rfind("torch.", 0) == 0 && dtype_from_storage_name(g.substr(6), &t);
}

class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, const std::string& where) : p_(data), end_(data + size), where_(where) {}

  ValuePtr run();

 private:
  [[noreturn]] void over_limit(const char* what, uint64_t limit) {
    GLMPIPE_FAIL() << where_ << ": data.pkl exceeds the unpickler's limit of " << limit << " " << what
                   << " (not a torch.save state dict of tensors)";
    throw 0;  // unreachable
  }
  ValuePtr make(Value::Kind k) {
    if (arena_.size() >= kPickleMaxObjects) over_limit("objects", kPickleMaxObjects);
    arena_.emplace_back();
    arena_.back().kind = k;
    return &arena_.back();
  }
  void push(ValuePtr v) {
    if (++pushes_ > 2 * kPickleMaxObjects) over_limit("stack pushes", 2 * kPickleMaxObjects);
    stack_.push_back(v);
  }
  // Records `child` inside `parent` for the nesting bound.
  void nest(ValuePtr parent, ValuePtr child) {
    if (child->depth + 1 > parent->depth) parent->depth = static_cast<uint16_t>(child->depth + 1);
    if (parent->depth > kPickleMaxDepth) over_limit("levels of nesting", kPickleMaxDepth);
  }
  const uint8_t* take(uint64_t n) {
    GLMPIPE_CHECK(static_cast<uint64_t>(end_ - p_) >= n) << where_ << ": data.pkl ends unexpectedly";
    const uint8_t* r = p_;
    p_ += n;
    return r;
  }
  template <typename T>
  T read() {
    T v;
    std::memcpy(&v, take(sizeof(T)), sizeof(T));
    return v;
  }
  std::string read_line() {
    const uint8_t* nl = static_cast<const uint8_t*>(std::memchr(p_, '\n', std::min<size_t>(end_ - p_, 256)));
    GLMPIPE_CHECK(nl != nullptr) << where_ << ": data.pkl: unterminated or overlong GLOBAL";
    std::string s(reinterpret_cast<const char*>(p_), nl - p_);
    p_ = nl + 1;
    return s;
  }
  ValuePtr pop() {
    GLMPIPE_CHECK(!stack_.empty() && (marks_.empty() || stack_.size() > marks_.back()))
        << where_ << ": data.pkl: stack underflow";
    ValuePtr v = stack_.back();
    stack_.pop_back();
    return v;
  }
  std::vector<ValuePtr> pop_to_mark() {
    GLMPIPE_CHECK(!marks_.empty()) << where_ << ": data.pkl: MARK missing";
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(stack_.begin() + m, stack_.end());
    stack_.resize(m);
    return items;
  }
  ValuePtr top() {
    GLMPIPE_CHECK(!stack_.empty() && (marks_.empty() || stack_.size() > marks_.back()))
        << where_ << ": data.pkl: empty stack";
    return stack_.back();
  }
  void push_string(uint64_t n) {
    const uint8_t* b = take(n);  // bounds n by the bytes left before anything is allocated
    auto v = make(Value::kString);
    v->s.assign(reinterpret_cast<const char*>(b), n);
    push(v);
  }
  void push_int(int64_t i) {
    auto v = make(Value::kInt);
    v->i = i;
    push(v);
  }
  ValuePtr tuple_of(std::vector<ValuePtr> items) {
    auto v = make(Value::kTuple);
    for (ValuePtr x : items) nest(v, x);
    v->items = std::move(items);
    return v;
  }
  void append(ValuePtr list, std::vector<ValuePtr> items) {
    GLMPIPE_CHECK(list->kind == Value::kList) << where_ << ": data.pkl: APPEND(S) to a non-list";
    for (ValuePtr x : items) nest(list, x);
    list->items.insert(list->items.end(), items.begin(), items.end());
  }
  void set_items(ValuePtr dict, const std::vector<ValuePtr>& kv) {
    GLMPIPE_CHECK(dict->kind == Value::kDict && kv.size() % 2 == 0) << where_ << ": data.pkl: bad SETITEMS";
    for (size_t i = 0; i < kv.size(); i += 2) {
      nest(dict, kv[i]);
      nest(dict, kv[i + 1]);
      dict->dict.emplace_back(kv[i], kv[i + 1]);
    }
  }
  void memo_put(uint64_t key) {
    if (memo_.size() >= kPickleMaxObjects && !memo_.count(key)) over_limit("memo entries", kPickleMaxObjects);
    memo_[key] = top();
  }
  int64_t as_int(ValuePtr v, const char* what) {
    GLMPIPE_CHECK(v->kind == Value::kInt) << where_ << ": data.pkl: " << what << " is not an int";
    return v->i;
  }
  std::vector<int64_t> as_ints(ValuePtr v, const char* what) {
    GLMPIPE_CHECK(v->kind == Value::kTuple || v->kind == Value::kList)
        << where_ << ": data.pkl: " << what << " is not a tuple";
    GLMPIPE_CHECK(v->items.size() <= static_cast<size_t>(kMaxTensorDims))
        << where_ << ": data.pkl: " << what << " has " << v->items.size() << " entries (limit " << kMaxTensorDims
        << " dimensions)";
    std::vector<int64_t> r;
    for (ValuePtr x : v->items) r.push_back(as_int(x, what));
    return r;
  }
  ValuePtr persistent_load(ValuePtr pid);
  ValuePtr reduce(ValuePtr callable, ValuePtr args);
  void op_global(uint8_t op);
  bool step(uint8_t op);

  const uint8_t* p_;
  const uint8_t* end_;
  std::string where_;
  std::deque<Value> arena_;
  uint64_t pushes_ = 0;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, ValuePtr> memo_;
};

ValuePtr Unpickler::persistent_load(ValuePtr pid) {
  GLMPIPE_CHECK(pid->kind == Value::kTuple && pid->items.size() == 5 && pid->items[0]->kind == Value::kString &&
                pid->items[0]->s == "storage" && pid->items[1]->kind == Value::kGlobal)
      << where_ << ": data.pkl: unsupported persistent id (expected ('storage', torch.XStorage, key, location, numel))";
  auto v = make(Value::kStorage);
  v->tensor = std::make_unique<PickledTensor>();
  const std::string& type = pid->items[1]->s;
  GLMPIPE_CHECK(type.rfind("torch.", 0) == 0 && dtype_from_storage_name(type.substr(6), &v->tensor->dtype))
      << where_ << ": data.pkl: unsupported storage type " << type;
  ValuePtr key = pid->items[2];
  GLMPIPE_CHECK((key->kind == Value::kString && key->s.size() <= kPickleMaxKeyBytes) || key->kind == Value::kInt)
      << where_ << ": data.pkl: bad storage key (a string of at most " << kPickleMaxKeyBytes << " bytes or an int)";
  v->tensor->storage_key = key->kind == Value::kString ? key->s : std::to_string(key->i);
  v->tensor->storage_numel = as_int(pid->items[4], "storage numel");
  return v;
}

ValuePtr Unpickler::reduce(ValuePtr callable, ValuePtr args) {
  GLMPIPE_CHECK(callable->kind == Value::kGlobal && args->kind == Value::kTuple)
      << where_ << ": data.pkl: REDUCE of a non-callable";
  const std::string& g = callable->s;
  if (g == "collections.OrderedDict") return make(Value::kDict);
  if (g == "torch._utils._rebuild_tensor_v2") {
    GLMPIPE_CHECK(args->items.size() >= 4 && args->items[0]->kind == Value::kStorage)
        << where_ << ": data.pkl: bad _rebuild_tensor_v2 arguments";
    auto v = make(Value::kTensor);
    v->tensor = std::make_unique<PickledTensor>(*args->items[0]->tensor);
    v->tensor->storage_offset = as_int(args->items[1], "storage offset");
    v->tensor->shape = as_ints(args->items[2], "size");
    v->tensor->strides = as_ints(args->items[3], "stride");
    GLMPIPE_CHECK(v->tensor->shape.size() == v->tensor->strides.size())
        << where_ << ": data.pkl: size and stride lengths differ";
    return v;
  }
  if (g == "torch._utils._rebuild_parameter" || g == "torch._utils._rebuild_parameter_with_state") {
    GLMPIPE_CHECK(!args->items.empty() && args->items[0]->kind == Value::kTensor)
        << where_ << ": data.pkl: bad _rebuild_parameter arguments";
    return args->items[0];
  }
  GLMPIPE_FAIL() << where_ << ": data.pkl calls unsupported callable " << g;
  return nullptr;
}

void Unpickler::op_global(uint8_t op) {  // GLOBAL / STACK_GLOBAL
  std::string module, name;
  if (op == 'c') {
    module = read_line();
    name = read_line();
  } else {
    auto n = pop(), m = pop();
    GLMPIPE_CHECK(n->kind == Value::kString && m->kind == Value::kString && n->s.size() + m->s.size() <= 256)
        << where_ << ": data.pkl: bad STACK_GLOBAL";
    module = m->s;
    name = n->s;
  }
  auto v = make(Value::kGlobal);
  v->s = module + "." + name;
  GLMPIPE_CHECK(allowed_global(v->s)) << where_ << ": data.pkl references unsupported callable " << v->s
                                      << " (only torch.save state dicts of tensors are read)";
  push(v);
}

// One opcode; true at STOP.
bool Unpickler::step(uint8_t op) {
  switch (op) {
    case 0x80: take(1); break;                             // PROTO
    case 0x95: take(8); break;                             // FRAME
    case '}': push(make(Value::kDict)); break;             // EMPTY_DICT
    case ']': push(make(Value::kList)); break;             // EMPTY_LIST
    case ')': push(make(Value::kTuple)); break;            // EMPTY_TUPLE
    case '(':                                              // MARK
      if (marks_.size() >= kPickleMaxDepth) over_limit("levels of nesting (MARK)", kPickleMaxDepth);
      marks_.push_back(stack_.size());
      break;
    case 't': push(tuple_of(pop_to_mark())); break;        // TUPLE
    case 0x85: { auto a = pop(); push(tuple_of({a})); break; }
    case 0x86: { auto b = pop(), a = pop(); push(tuple_of({a, b})); break; }
    case 0x87: { auto c = pop(), b = pop(), a = pop(); push(tuple_of({a, b, c})); break; }
    case 'l': { auto items = pop_to_mark(); auto v = make(Value::kList); append(v, std::move(items)); push(v); break; }
    case 'd': { auto kv = pop_to_mark(); auto v = make(Value::kDict); set_items(v, kv); push(v); break; }
    case 'u': { auto kv = pop_to_mark(); set_items(top(), kv); break; }  // SETITEMS
    case 's': { auto val = pop(), key = pop(); set_items(top(), {key, val}); break; }
    case 'e': { auto items = pop_to_mark(); append(top(), std::move(items)); break; }  // APPENDS
    case 'a': { auto v = pop(); append(top(), {v}); break; }
    case 'X': push_string(read<uint32_t>()); break;       // BINUNICODE
    case 0x8c: push_string(read<uint8_t>()); break;       // SHORT_BINUNICODE
    case 0x8d: push_string(read<uint64_t>()); break;      // BINUNICODE8
    case 'U': push_string(read<uint8_t>()); break;        // SHORT_BINSTRING
    case 'T': push_string(read<uint32_t>()); break;       // BINSTRING
    case 'C': push_string(read<uint8_t>()); break;        // SHORT_BINBYTES
    case 'B': push_string(read<uint32_t>()); break;       // BINBYTES
    case 'K': push_int(read<uint8_t>()); break;           // BININT1
    case 'M': push_int(read<uint16_t>()); break;          // BININT2
    case 'J': push_int(read<int32_t>()); break;           // BININT
    case 0x8a: {                                           // LONG1
      uint8_t n = read<uint8_t>();
      GLMPIPE_CHECK(n <= 8) << where_ << ": data.pkl: LONG1 wider than 64 bits";
      const uint8_t* b = take(n);
      uint64_t u = 0;
      for (int k = n - 1; k >= 0; --k) u = (u << 8) | b[k];
      if (n > 0 && n < 8 && (b[n - 1] & 0x80)) u |= ~uint64_t(0) << (8 * n);  // sign-extend
      push_int(static_cast<int64_t>(u));
      break;
    }
    case 'G': take(8); push(make(Value::kFloat)); break;  // BINFLOAT: the value is never needed
    case 'N': push(make(Value::kNone)); break;
    case 0x88: case 0x89: { auto v = make(Value::kBool); v->i = op == 0x88; push(v); break; }
    case 'q': memo_put(read<uint8_t>()); break;           // BINPUT
    case 'r': memo_put(read<uint32_t>()); break;          // LONG_BINPUT
    case 0x94: memo_put(memo_.size()); break;             // MEMOIZE
    case 'h': case 'j': {                                  // BINGET / LONG_BINGET
      uint64_t k = op == 'h' ? read<uint8_t>() : read<uint32_t>();
      auto it = memo_.find(k);
      GLMPIPE_CHECK(it != memo_.end()) << where_ << ": data.pkl: memo key " << k << " missing";
      push(it->second);
      break;
    }
    case 'c': case 0x93: op_global(op); break;
    case 'Q': { auto pid = pop(); push(persistent_load(pid)); break; }  // BINPERSID
    case 'R': { auto args = pop(); auto fn = pop(); push(reduce(fn, args)); break; }
    case 'b': pop(); break;  // BUILD: state (e.g. a state dict's _metadata) is not needed
    case '.':                // STOP
      GLMPIPE_CHECK(stack_.size() == 1) << where_ << ": data.pkl: STOP with " << stack_.size() << " values";
      return true;
    default:
      GLMPIPE_FAIL() << where_ << ": data.pkl: unsupported pickle opcode 0x" << std::hex << int(op);
  }
  return false;
}

ValuePtr Unpickler::run() {
  while (!step(*take(1))) {
  }
  return stack_.back();
}

// --- writer ---

void put_int(std::string& o, int64_t v) {
  if (v >= 0 && v < 256) {
    o += 'K';
    o += static_cast<char>(v);
  } else if (v >= 0 && v < 65536) {
    o += 'M';
    o += static_cast<char>(v & 0xff);
    o += static_cast<char>(v >> 8);
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    o += 'J';
    int32_t x = static_cast<int32_t>(v);
    o.append(reinterpret_cast<const char*>(&x), 4);
  } else {
    o += '\x8a';
    o += '\x08';
    o.append(reinterpret_cast<const char*>(&v), 8);
  }
}

void put_str(std::string& o, const std::string& s) {
  o += 'X';
  uint32_t n = static_cast<uint32_t>(s.size());
  o.append(reinterpret_cast<const char*>(&n), 4);
  o += s;
}

void put_int_tuple(std::string& o, const std::vector<int64_t>& v) {
  if (v.empty()) {
    o += ')';
    return;
  }
  o += '(';
  for (int64_t x : v) put_int(o, x);
  o += 't';
}

}  // namespace

std::vector<PickledTensor> unpickle_state_dict(const uint8_t* data, size_t size, const std::string& where) {
  GLMPIPE_CHECK(size <= kPickleMaxBytes) << where << ": data.pkl of " << size
                                         << " bytes exceeds the unpickler's limit of " << kPickleMaxBytes << " bytes";
  Unpickler u(data, size, where);
  ValuePtr root = u.run();
  GLMPIPE_CHECK(root->kind == Value::kDict) << where << ": data.pkl does not hold a dict of tensors";
  std::vector<PickledTensor> out;
  uint64_t name_bytes = 0;  // keys reused through the memo must not multiply the output
  for (const auto& [k, v] : root->dict) {
    GLMPIPE_CHECK(k->kind == Value::kString && k->s.size() <= kPickleMaxKeyBytes)
        << where << ": data.pkl: state-dict key is not a string of at most " << kPickleMaxKeyBytes << " bytes";
    GLMPIPE_CHECK(v->kind == Value::kTensor) << where << ": data.pkl: entry " << k->s << " is not a tensor";
    name_bytes += k->s.size();
    GLMPIPE_CHECK(name_bytes <= size) << where << ": data.pkl: the state-dict keys add up to more bytes than the file";
    out.push_back(*v->tensor);
    out.back().name = k->s;
  }
  return out;
}

std::string pickle_state_dict(const std::vector<PickledTensor>& tensors) {
  std::string o = "\x80\x02";
  o += "ccollections\nOrderedDict\n)R";
  if (!tensors.empty()) o += '(';
  for (const auto& t : tensors) {
    put_str(o, t.name);
    o += "ctorch._utils\n_rebuild_tensor_v2\n(";
    o += '(';
    put_str(o, "storage");
    o += "ctorch\n" + dtype_to_storage_name(t.dtype) + "\n";
    put_str(o, t.storage_key);
    put_str(o, "cpu");
    put_int(o, t.storage_numel);
    o += "tQ";
    put_int(o, t.storage_offset);
    put_int_tuple(o, t.shape);
    put_int_tuple(o, t.strides);
    o += '\x89';                             // requires_grad False
    o += "ccollections\nOrderedDict\n)R";   // backward hooks
    o += "tR";
  }
  if (!tensors.empty()) o += 'u';
  o += '.';
  return o;
}

}  // namespace glmpipe
