// Crafted checkpoints through the CLI (issue 15): every one must end `glmpipe inspect`, `forward` and
// `generate` with exit 1 and one error line naming the file (and tensor), never a signal, never an
// output file. Each crafted file starts from a real 3-shard tiny model, with the tensor on the
// first, middle or last shard rewritten by the helpers below.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "checkpoint/mapped_file.h"
#include "checkpoint/pickle.h"
#include "checkpoint/safetensors.h"
#include "checkpoint/tiny_model.h"
#include "checkpoint/torch_zip.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

using ojson = nlohmann::ordered_json;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

class HostileCheckpoint : public testing::Test {
 protected:
  void SetUp() override { dir_ = test::make_temp_dir("hostile"); }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  void make(CheckpointFormat fmt, int shards = 3) {
    std::system(("rm -rf '" + dir_ + "'/*").c_str());
    TinyModelOptions o;
    o.format = fmt;
    o.shards = shards;
    make_tiny_model(dir_, o);
  }
  // Shard files in order and, for shard k, its smallest tensor.
  std::vector<std::string> shard_files() const {
    std::vector<std::string> files;
    for (const char* idx : {"/model.safetensors.index.json", "/pytorch_model.bin.index.json"}) {
      if (!test::file_exists(dir_ + idx)) continue;
      auto j = nlohmann::json::parse(slurp(dir_ + idx));
      for (auto& [k, v] : j["weight_map"].items())
        if (std::find(files.begin(), files.end(), v.get<std::string>()) == files.end()) files.push_back(v.get<std::string>());
    }
    std::sort(files.begin(), files.end());
    return files;
  }
  // A small float tensor of `file` that the model loads (not rotary_emb.inv_freq).
  std::string small_tensor_of(const std::string& file) const {
    auto f = MappedFile::open(dir_ + "/" + file);
    auto locs = file.find(".safetensors") != std::string::npos ? read_safetensors_index(*f, file)
                                                               : read_torch_zip_index(*f, file);
    std::string best;
    int64_t best_bytes = std::numeric_limits<int64_t>::max();
    for (const auto& l : locs)
      if (l.info.name.find("inv_freq") == std::string::npos && l.info.nbytes < best_bytes)
        best = l.info.name, best_bytes = l.info.nbytes;
    return best;
  }

  // Rewrites the header of a safetensors shard: `edit(header, base)` may change entries; `base` is
  // 8 + the header length, which stays what it was with 20-digit offsets (edit twice: once to
  // measure the length, once with the final base).
  void edit_safetensors(const std::string& file, const std::function<void(ojson&, uint64_t base)>& edit) {
    const std::string path = dir_ + "/" + file, bytes = slurp(path);
    uint64_t len = 0;
    std::memcpy(&len, bytes.data(), 8);
    const std::string data = bytes.substr(8 + len);
    ojson h = ojson::parse(bytes.substr(8, len));
    ojson probe = h;
    edit(probe, 0);
    std::string text = probe.dump();
    const uint64_t padded = (text.size() + 7) / 8 * 8;
    edit(h, 8 + padded);
    text = h.dump();
    ASSERT_LE(text.size(), padded) << "offset digits changed the header length";
    text.append(padded - text.size(), ' ');
    spit(path, std::string(reinterpret_cast<const char*>(&padded), 8) + text + data);
  }
  // Rewrites data.pkl of a torch.save shard with `edit` applied to tensor `name`.
  void edit_bin(const std::string& file, const std::string& name, const std::function<void(PickledTensor&)>& edit) {
    const std::string path = dir_ + "/" + file;
    auto f = MappedFile::open(path);
    std::vector<ZipEntry> entries = read_zip_directory(*f);
    std::vector<PickledTensor> meta;
    for (const auto& e : entries)
      if (e.name.size() > 9 && e.name.compare(e.name.size() - 9, 9, "/data.pkl") == 0)
        meta = unpickle_state_dict(f->data() + e.data_offset, e.size, path);
    bool found = false;
    for (auto& t : meta)
      if (t.name == name) edit(t), found = true;
    ASSERT_TRUE(found) << name;
    const std::string pkl = pickle_state_dict(meta);
    ZipWriter zip(path + ".new");
    for (const auto& e : entries) {
      if (e.name.find("/data.pkl") != std::string::npos) zip.add(e.name, pkl.data(), pkl.size());
      else zip.add(e.name, f->data() + e.data_offset, e.size);
    }
    zip.finish();
    f.reset();
    ASSERT_EQ(std::rename((path + ".new").c_str(), path.c_str()), 0);
  }

  // Runs inspect, forward and generate (only the `only`-th of them, mod 3, when >= 0: the CLI starts
  // slowly, so loops over shards spread the three commands); each must exit 1 with an error naming
  // every `parts`, the error on one line, no signal, no output file.
  void expect_refused(const std::vector<std::string>& parts, int only = -1) {
    const std::string bin = test::glmpipe_bin(), out = dir_ + "/out.npy";
    const std::vector<std::string> cmds = {
        bin + " inspect '" + dir_ + "'",
        bin + " forward --model '" + dir_ + "' --ids 1,2,3 --out '" + out + "'",
        bin + " generate --model '" + dir_ + "' --ids 1,2,3 --max-new-tokens 2 --print-ids"};
    for (size_t c = 0; c < cmds.size(); ++c) {
      if (only >= 0 && c != static_cast<size_t>(only) % cmds.size()) continue;
      const std::string& cmd = cmds[c];
      test::RunResult r = test::run_command("timeout -s KILL 60 " + cmd);
      EXPECT_EQ(r.exit_code, 1) << cmd << "\nstderr: " << r.err;  // 128+N would be a signal
      for (const auto& p : parts) EXPECT_NE(r.err.find(p), std::string::npos) << cmd << " lacks " << p << ": " << r.err;
      size_t error_lines = 0;
      for (size_t pos = 0; (pos = r.err.find(p_error_, pos)) != std::string::npos; ++pos) ++error_lines;
      EXPECT_EQ(error_lines, 1u) << cmd << ": " << r.err;
      EXPECT_EQ(r.err.find("frame #"), std::string::npos) << "a backtrace: " << r.err;
      EXPECT_FALSE(test::file_exists(out)) << cmd;
      EXPECT_EQ(r.out, "") << cmd;
    }
  }
  const std::string p_error_ = "[error]";
  std::string dir_;
};

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

// data_offsets whose sum with the header length wraps past 2^64: the old end-of-file check passed
// and the view pointed 64 bytes before the mapping.
TEST_F(HostileCheckpoint, SafetensorsOffsetsWrapOnEveryShard) {
  for (int shard = 0; shard < 3; ++shard) {
    make(CheckpointFormat::kSafetensors);
    const std::string file = shard_files().at(static_cast<size_t>(shard));
    const std::string name = small_tensor_of(file);
    edit_safetensors(file, [&](ojson& h, uint64_t base) {
      const uint64_t n = h[name]["data_offsets"][1].get<uint64_t>() - h[name]["data_offsets"][0].get<uint64_t>();
      const uint64_t begin = base == 0 ? kU64Max - n : kU64Max - base - 64 + 1;  // base + begin = -64
      h[name]["data_offsets"] = {begin, begin + n};
    });
    SCOPED_TRACE(file + " " + name);
    expect_refused({file, name}, shard);
  }
}

// Offsets that wrap to the start of the file (the header read as weights: silently wrong values).
TEST_F(HostileCheckpoint, SafetensorsOffsetsWrapToHeader) {
  make(CheckpointFormat::kSafetensors);
  const std::string file = shard_files().at(1), name = small_tensor_of(file);
  edit_safetensors(file, [&](ojson& h, uint64_t base) {
    const uint64_t n = h[name]["data_offsets"][1].get<uint64_t>() - h[name]["data_offsets"][0].get<uint64_t>();
    const uint64_t begin = base == 0 ? kU64Max - n : kU64Max - base + 1;  // base + begin = 0 (mod 2^64)
    h[name]["data_offsets"] = {begin, begin + n};
  });
  expect_refused({file, name});
}

// Storage numel * element size wraps to a small number that fits the record.
TEST_F(HostileCheckpoint, TorchStorageSizeOverflowOnEveryShard) {
  for (int shard = 0; shard < 3; ++shard) {
    make(CheckpointFormat::kBin);
    const std::string file = shard_files().at(static_cast<size_t>(shard)), name = small_tensor_of(file);
    edit_bin(file, name, [](PickledTensor& t) { t.storage_numel += int64_t{1} << 62; });  // x4 bytes wraps
    SCOPED_TRACE(file + " " + name);
    expect_refused({file, name}, shard + 1);
  }
}

// Strides whose extent wraps int64 (negative "last element"): the old bound check passed.
TEST_F(HostileCheckpoint, TorchStrideOverflow) {
  make(CheckpointFormat::kBin);
  const std::string file = shard_files().at(2), name = small_tensor_of(file);
  edit_bin(file, name, [](PickledTensor& t) {
    ASSERT_EQ(t.shape.size(), 1u);
    t.shape = {3, t.shape[0] / 3};
    t.strides = {int64_t{1} << 62, 1};  // 2 * 2^62 overflows int64
  });
  expect_refused({file, name, "overflow"});
  // And a storage offset far past the record.
  make(CheckpointFormat::kBin);
  edit_bin(file, name, [](PickledTensor& t) { t.storage_offset = int64_t{1} << 61; });
  expect_refused({file, name}, 1);
}

TEST_F(HostileCheckpoint, OverlappingSafetensorsTensors) {
  make(CheckpointFormat::kSafetensors, 1);
  const std::string a = "transformer.layers.0.input_layernorm.weight", b = "transformer.layers.0.input_layernorm.bias";
  edit_safetensors("model.safetensors", [&](ojson& h, uint64_t) { h[b]["data_offsets"] = h[a]["data_offsets"]; });
  expect_refused({"model.safetensors", a, b, "overlap"});
}

TEST_F(HostileCheckpoint, DtypeDoesNotMatchData) {
  const std::string name = "transformer.layers.1.post_attention_layernorm.bias";
  make(CheckpointFormat::kSafetensors, 1);  // F32 [64] labelled F16: 256 bytes for 128
  edit_safetensors("model.safetensors", [&](ojson& h, uint64_t) { h[name]["dtype"] = "F16"; });
  expect_refused({"model.safetensors", name, "does not match"}, 0);
  make(CheckpointFormat::kSafetensors, 1);  // F32 labelled I32: same bytes, not a float
  edit_safetensors("model.safetensors", [&](ojson& h, uint64_t) { h[name]["dtype"] = "I32"; });
  expect_refused({"model.safetensors", name, "floating point"}, 1);
  make(CheckpointFormat::kBin, 1);  // FloatStorage record read as HalfStorage
  edit_bin("pytorch_model.bin", name, [](PickledTensor& t) { t.dtype = at::kHalf; });
  expect_refused({"pytorch_model.bin", name, "does not match"}, 2);
}

TEST_F(HostileCheckpoint, FifoShardDoesNotBlock) {
  make(CheckpointFormat::kSafetensors);
  const std::string file = shard_files().at(1);
  std::remove((dir_ + "/" + file).c_str());
  ASSERT_EQ(::mkfifo((dir_ + "/" + file).c_str(), 0644), 0);
  expect_refused({file, "FIFO"});
}

TEST_F(HostileCheckpoint, DeviceAsShard) {
  make(CheckpointFormat::kBin, 1);
  std::remove((dir_ + "/pytorch_model.bin").c_str());
  ASSERT_EQ(::symlink("/dev/zero", (dir_ + "/pytorch_model.bin").c_str()), 0);
  expect_refused({"pytorch_model.bin", "character device"}, 2);
}

// A shard whose data.pkl is a deep nest of tuples (the old destructor recursed until SIGSEGV) and one
// whose list contains itself (leaked): both are refused with the limit or the reason named.
TEST_F(HostileCheckpoint, NestedAndCyclicPickles) {
  auto write_pkl = [&](const std::string& pkl) {
    std::system(("rm -rf '" + dir_ + "'/*").c_str());
    save_model_config(tiny_model_config(TinyModelOptions{}), dir_ + "/config.json");
    ZipWriter zip(dir_ + "/pytorch_model.bin");
    zip.add("pytorch_model/data.pkl", pkl.data(), pkl.size());
    zip.add("pytorch_model/version", "3\n", 2);
    zip.finish();
  };
  write_pkl("\x80\x02)" + std::string(1 << 20, '\x85') + ".");  // ((((),),),) ... 1M deep
  expect_refused({"pytorch_model.bin", "limit of 64 levels of nesting"}, 0);
  write_pkl("\x80\x02" + std::string(1 << 20, '(') + ")");  // 1M open MARKs
  expect_refused({"pytorch_model.bin", "limit"}, 1);
  write_pkl(std::string("\x80\x02]q\x00h\x00" "a.", 9));  // l = []; l.append(l)
  expect_refused({"pytorch_model.bin", "not hold a dict"}, 2);
  write_pkl("\x80\x02" + std::string(16 << 20, ']'));  // 16 Mi objects
  expect_refused({"pytorch_model.bin", "limit of 2097152 objects"}, 0);
}

}  // namespace
}  // namespace glmpipe
