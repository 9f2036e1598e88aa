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
  const ModelSchema schema = model_schema(m.config);
  const int L = m.num_layers();
  for (const std::string& name : schema.units) m.units.push_back({name, 0});
  const ParamSpec* head = nullptr;
  for (const ParamSpec& p : schema.params)
    if (p.kind == ParamKind::kHead) head = &p;
  for (const TensorInfo& t : ckpt.tensors()) {
    const TensorSpec* spec = schema.find(t.name);
    int unit = spec ? schema.param_of(*spec).unit : -1;
    if (!spec) {  // not in the schema: counted with its block when it names one
      const int64_t layer = schema.layer_of(t.name);
      GLMPIPE_CHECK(layer >= 0 && layer < L)
          << "tensor " << t.name << " belongs to no placement unit (known: the " << family_name(m.config.family)
          << " tensors of " << schema.units.front() << ", " << schema.layer_prefix << "N, " << schema.units[L + 1]
          << ", " << schema.units.back() << ")";
      unit = 1 + static_cast<int>(layer);
    }
    const bool integer = t.dtype == at::kChar || t.dtype == at::kByte;
    m.units[static_cast<size_t>(unit)].weight_bytes +=
        detail::resident_bytes(spec, schema, t.shape, integer, t.nbytes, dtype, m.quantization);
  }
  GLMPIPE_CHECK(m.units.front().weight_bytes > 0)
      << ckpt.dir() << ": no " << schema.params.front().name << " in the checkpoint";
  // Tied (config tie_word_embeddings, the family's default when absent): the runtime never reads a
  // stored lm_head.weight; the head is the embedding matrix (loaded again on a stage without it).
  if (head && !head->tied_to.empty()) {
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
