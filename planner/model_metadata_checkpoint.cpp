// metadata_from_checkpoint: unit bytes from a Checkpoint's tensor list (no tensor bytes read).
// Kept apart from model_metadata.cpp so that code using only synthesized metadata does not link
// the checkpoint reader.
#include <filesystem>

#include "checkpoint/checkpoint.h"
#include "common/error.h"
#include "planner/model_metadata.h"

namespace glmpipe {

ModelMetadata metadata_from_checkpoint(const Checkpoint& ckpt, const std::string& dtype,
                                       const std::string& quantization) {
  ModelMetadata m;
  m.config = ckpt.config();
  m.dtype = dtype;
  dtype_bytes(dtype);  // validates
  m.source = "checkpoint " + ckpt.dir();
  const int bits = m.config.quantization_bit;
  const std::string stored = bits == 4 ? "int4" : bits == 8 ? "int8" : "";
  GLMPIPE_CHECK(stored.empty() || quantization.empty() || quantization == stored)
      << ckpt.dir() << ": the checkpoint is quantized to " << stored << " (config.json quantization_bit "
      << bits << ") but the deployment asks for model.quantization " << quantization;
  m.quantization = stored.empty() ? quantization : stored;
  const int L = m.num_layers();
  m.units = detail::empty_units(L);
  for (const TensorInfo& t : ckpt.tensors()) {
    int idx = detail::unit_index_of(t.name, L);
    if (idx < 0) continue;
    bool integer = t.dtype == at::kChar || t.dtype == at::kByte;
    m.units[static_cast<size_t>(idx)].weight_bytes +=
        detail::resident_bytes(t.name, t.shape, integer, t.nbytes, dtype, m.quantization);
  }
  GLMPIPE_CHECK(m.units.front().weight_bytes > 0)
      << ckpt.dir() << ": no transformer.word_embeddings.weight in the checkpoint";
  if (!ckpt.has("lm_head.weight")) {
    m.lm_head_tied = true;
    m.units.back().weight_bytes = m.units.front().weight_bytes;
  }
  return m;
}

ModelMetadata load_model_metadata(const std::string& dir, const std::string& dtype,
                                  const std::string& quantization) {
  namespace fs = std::filesystem;
  GLMPIPE_CHECK(!dir.empty()) << "model.path is empty (set it in the deployment or pass --model DIR)";
  GLMPIPE_CHECK(fs::is_directory(dir)) << dir << ": model directory does not exist";
  for (const char* weights : {"pytorch_model.bin.index.json", "model.safetensors.index.json",
                              "pytorch_model.bin", "model.safetensors"})
    if (fs::exists(fs::path(dir) / weights))
      return metadata_from_checkpoint(Checkpoint::open(dir), dtype, quantization);
  GLMPIPE_CHECK(fs::exists(fs::path(dir) / "config.json"))
      << dir << ": neither weights (pytorch_model.bin[.index.json], model.safetensors[.index.json]) nor "
      << "config.json";
  const std::string cfg_file = (fs::path(dir) / "config.json").string();
  ModelMetadata m;
  try {
    m = synthesize_metadata(load_model_config(dir), dtype, quantization);
  } catch (const Error& e) {
    GLMPIPE_FAIL() << cfg_file << ": " << e.what();
  }
  m.source = "synthesized from " + (fs::path(dir) / "config.json").string();
  return m;
}

}  // namespace glmpipe
