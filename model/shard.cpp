// Shard: the schema-driven parts shared by every family (see shard.h).
#include "model/shard.h"

#include <algorithm>

#include "common/error.h"
#include "model/quant.h"

namespace glmpipe {

at::ScalarType compute_dtype(const ModelOptions& o) {
  return o.device.is_cpu() && o.dtype == at::kBFloat16 ? at::kFloat : o.dtype;
}

Shard::Shard(const ModelConfig& config, const ShardSpec& spec, const ModelOptions& options)
    : config_(config), spec_(spec), options_(options), schema_(model_schema(config)) {
  GLMPIPE_CHECK(spec.layer_begin >= 0 && spec.layer_begin <= spec.layer_end && spec.layer_end <= config.num_layers)
      << "shard layers [" << spec.layer_begin << ", " << spec.layer_end << ") outside the model's "
      << config.num_layers << " layers";
}

bool Shard::owns_unit(int unit) const {
  const int L = static_cast<int>(config_.num_layers);
  if (unit == 0) return spec_.has_embedding;
  if (unit <= L) return unit - 1 >= spec_.layer_begin && unit - 1 < spec_.layer_end;
  return spec_.has_head;
}

std::vector<const ParamSpec*> Shard::owned_params() const {
  std::vector<const ParamSpec*> out;
  for (const ParamSpec& p : schema_.params)
    if (p.kind != ParamKind::kIgnored && owns_unit(p.unit)) out.push_back(&p);
  return out;
}

// A head tied to the embedding is served by the embedding matrix when the shard holds both.
static bool head_is_alias(const ParamSpec& p, const ShardSpec& spec) {
  return p.kind == ParamKind::kHead && !p.tied_to.empty() && spec.has_embedding;
}

std::vector<std::pair<std::string, at::Tensor*>> Shard::named_parameters() {
  std::vector<std::pair<std::string, at::Tensor*>> out;
  for (const ParamSpec* p : owned_params()) {
    switch (p->kind) {
      case ParamKind::kEmbedding: out.emplace_back(p->name, &word_embeddings_); break;
      case ParamKind::kNorm: out.emplace_back(p->name, tensor_slot(*p)); break;
      case ParamKind::kHead:
        if (!head_is_alias(*p, spec_)) out.emplace_back(p->name, &lm_head_.weight);
        break;
      case ParamKind::kLinear: {
        LinearWeight* w = linear_slot(*p);
        out.emplace_back(p->name + ".weight", &w->weight);
        if (p->bias) out.emplace_back(p->name + ".bias", &w->bias);
        if (w->quantized()) out.emplace_back(p->name + ".weight_scale", &w->scale);
        break;
      }
      case ParamKind::kIgnored: break;
    }
  }
  return out;
}

int64_t Shard::parameter_bytes() {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters())
    if (t->defined() && !disk_.holds(*t)) n += t->nbytes();  // resident bytes: disk views excluded
  return n;
}

void Shard::quantize_linears(int bits) {
  for (const ParamSpec* p : owned_params()) {
    if (p->kind != ParamKind::kLinear || !p->quantizable) continue;
    LinearWeight* w = linear_slot(*p);
    if (w->quantized() || !w->weight.defined()) continue;
    auto [q, scale] = quantize_rows(w->weight, bits);
    w->out_features = w->weight.size(0);
    w->in_features = w->weight.size(1);
    w->bits = bits;
    w->weight = q;
    w->scale = scale.to(at::kFloat);
  }
}

std::vector<std::string> Shard::checkpoint_keys(const Checkpoint& ckpt) const {
  std::vector<std::string> keys;
  for (const ParamSpec* p : owned_params()) {
    if (p->kind == ParamKind::kLinear) {
      keys.push_back(p->name + ".weight");
      if (config_.quantization_bit != 0 && p->quantizable) keys.push_back(p->name + ".weight_scale");
      if (p->bias) keys.push_back(p->name + ".bias");
    } else if (p->kind == ParamKind::kHead) {
      if (head_is_alias(*p, spec_)) continue;
      keys.push_back(p->tied_to.empty() ? p->name : p->tied_to);  // tied: never lm_head.weight
    } else {
      keys.push_back(p->name);
    }
  }
  return keys;
}

// The disk tier's tensors of this shard: the matrices (embedding, block Linear weights, head) of its
// disk units, in the dtype the shard computes with (stored int8 weights stay int8).
std::vector<DiskWeights::Want> Shard::disk_wants(const Checkpoint& ckpt) const {
  std::vector<DiskWeights::Want> wants;
  if (spec_.disk_units.empty()) return wants;
  GLMPIPE_CHECK(options_.device.is_cpu()) << "the disk tier computes on a cpu rank, not " << options_.device;
  for (const ParamSpec* p : owned_params()) {
    if (!spec_.on_disk(p->unit)) continue;
    const std::string& unit = schema_.units.at(static_cast<size_t>(p->unit));
    if (p->kind == ParamKind::kEmbedding) wants.push_back({p->unit, unit, p->name, options_.dtype});
    if (p->kind == ParamKind::kHead && !head_is_alias(*p, spec_))
      wants.push_back({p->unit, unit, p->tied_to.empty() ? p->name : p->tied_to, options_.dtype});
    if (p->kind != ParamKind::kLinear) continue;
    const bool stored_q = p->quantizable && config_.quantization_bit != 0;
    GLMPIPE_CHECK(stored_q || !p->quantizable || options_.quantize_bits == 0)
        << "the disk tier serves " << unit << " as stored; quantize-at-load (model.quantization) with units on disk "
        << "is not supported: use a quantized checkpoint, or keep those units resident";
    wants.push_back({p->unit, unit, p->name + ".weight", stored_q ? at::kChar : options_.dtype});
  }
  (void)ckpt;
  return wants;
}

void Shard::load(const Checkpoint& ckpt, const LoadCallback& on_progress) {
  const auto dt = options_.dtype;
  const auto dev = options_.device;
  const ParamSpec& head_spec = schema_.params.back();
  GLMPIPE_CHECK(!spec_.has_head || head_spec.kind != ParamKind::kHead || !head_spec.tied_to.empty() ||
                ckpt.has(head_spec.name))
      << ckpt.dir() << ": config.json says tie_word_embeddings is false (the head is untied), but the checkpoint "
      << "has no " << head_spec.name << " (a tied checkpoint omits tie_word_embeddings or sets it true)";
  disk_.open(ckpt, disk_wants(ckpt), options_.offload_dir);  // converts what it must, once
  LoadProgress progress;
  for (const auto& key : checkpoint_keys(ckpt)) {
    progress.tensors_total += 1;
    progress.bytes_total += ckpt.has(key) ? ckpt.info(key).nbytes : 0;  // a missing key fails below, by name
  }
  if (on_progress) on_progress(progress);
  auto step = [&](const std::string& name) {
    progress.tensors_done += 1;
    progress.bytes_done += ckpt.info(name).nbytes;
    if (on_progress) on_progress(progress);
  };
  // Every tensor read goes through here: one progress step each. Disk units' matrices are views.
  auto read = [&](const std::string& name, at::ScalarType type, at::Device device) {
    at::Tensor t = disk_.serves(name) ? disk_.view(name) : ckpt.load(name, type, device);
    step(name);
    return t;
  };
  auto load_linear = [&](const ParamSpec& p, LinearWeight& w) {
    const int stored = p.quantizable ? config_.quantization_bit : 0;
    const int at_load = p.quantizable ? options_.quantize_bits : 0;
    if (stored != 0) {
      w.bits = stored;
      // Used as stored: on the CPU a resident view of the file's pages (no copy; a 6B int4 model's
      // 2.7 GiB of int weights map in well under a second), else a copy on the device.
      const std::string name = p.name + ".weight";
      const bool view = dev.is_cpu() && !disk_.serves(name) && ckpt.info(name).dtype == at::kChar;
      w.weight = view ? ckpt.map_resident(name) : read(name, at::kChar, dev);
      if (view) step(name);
      if (!w.weight.is_contiguous()) w.weight = w.weight.contiguous();  // a strided torch.save view
      w.scale = read(p.name + ".weight_scale", at::kFloat, dev);
      w.out_features = w.weight.size(0);
      w.in_features = w.weight.size(1) * (w.bits == 4 ? 2 : 1);
    } else if (at_load != 0) {
      // Row slices of ~16 MiB of the mapped source, quantized straight into the final buffers (one
      // parallel pass per slice, no float copy: quantize_rows reads fp16/bf16/fp32 rows itself),
      // their source pages dropped after each slice. Quantization is per row, so this equals
      // quantize_rows of the whole matrix (and `glmpipe quantize`) bit for bit.
      const std::string name = p.name + ".weight";
      const TensorInfo& info = ckpt.info(name);
      GLMPIPE_CHECK(info.shape.size() == 2) << ckpt.dir() << ": " << name << " is not a matrix";
      const int64_t out = info.shape[0], in = info.shape[1];
      GLMPIPE_CHECK(at_load == 8 || in % 2 == 0) << ckpt.dir() << ": " << name << " has odd width " << in
                                                 << ", cannot quantize to int4";
      const int64_t rows = std::max<int64_t>(1, (int64_t{16} << 20) / std::max<int64_t>(1, info.nbytes / std::max<int64_t>(1, out)));
      at::Tensor q = at::empty({out, at_load == 8 ? in : in / 2}, at::TensorOptions().dtype(at::kChar));
      at::Tensor scale16 = at::empty({out}, at::TensorOptions().dtype(at::kHalf));
      const at::Tensor src = ckpt.map(name);
      for (int64_t r = 0; r < out; r += rows) {
        const int64_t n = std::min(rows, out - r);
        quantize_rows_into(src.narrow(0, r, n), at_load, q.narrow(0, r, n), scale16.narrow(0, r, n));
        ckpt.release_rows(name, r, n);
      }
      at::Tensor scale = scale16.to(at::kFloat);
      step(name);
      w.bits = at_load;
      w.weight = q.to(dev);
      w.scale = scale.to(dev);
      w.out_features = out;
      w.in_features = in;
    } else {
      w.weight = read(p.name + ".weight", dt, dev);
      w.out_features = w.weight.size(0);
      w.in_features = w.weight.size(1);
    }
    if (p.bias) w.bias = read(p.name + ".bias", dt, dev);
  };
  for (const ParamSpec* p : owned_params()) {
    switch (p->kind) {
      case ParamKind::kEmbedding: word_embeddings_ = read(p->name, dt, dev); break;
      case ParamKind::kNorm: *tensor_slot(*p) = read(p->name, dt, dev); break;
      case ParamKind::kLinear: load_linear(*p, *linear_slot(*p)); break;
      case ParamKind::kHead:
        if (head_is_alias(*p, spec_)) {
          lm_head_.weight = word_embeddings_;  // tied: one copy serves both
          if (spec_.on_disk(0)) disk_.alias(p->unit, 0);  // the head's use pages the embedding in
        } else {
          lm_head_.weight = read(p->tied_to.empty() ? p->name : p->tied_to, dt, dev);  // tied: the embedding
        }
        lm_head_.out_features = lm_head_.weight.size(0);
        lm_head_.in_features = lm_head_.weight.size(1);
        break;
      case ParamKind::kIgnored: break;
    }
  }
}

KVCache Shard::make_cache(int64_t slots, int64_t max_seq) const {
  return KVCache(spec_.layer_begin, spec_.layer_end, slots, max_seq, config_.kv_heads(), config_.head_dim(),
                 options_.dtype, options_.device);
}

at::Tensor Shard::embed(const at::Tensor& ids) const {
  GLMPIPE_CHECK(spec_.has_embedding) << "embed() on a shard without the word embedding";
  GLMPIPE_CHECK(ids.numel() == 0 || (ids.min().item<int64_t>() >= 0 && ids.max().item<int64_t>() < config_.vocab_size))
      << "token id out of range [0, " << config_.vocab_size << ")";
  at::Tensor rows = word_embeddings_.index_select(0, ids.to(word_embeddings_.device()));
  release_unit(0);
  return rows;
}

at::Tensor Shard::check_blocks_input(const at::Tensor& hidden, const BatchLayout& batch, const KVCache& cache,
                                     int64_t max_positions) const {
  GLMPIPE_CHECK(hidden.dim() == 2 && hidden.size(0) == total_tokens(batch) && hidden.size(1) == config_.hidden_size)
      << "forward_blocks: hidden " << hidden.sizes() << " does not match " << total_tokens(batch)
      << " tokens x hidden " << config_.hidden_size;
  for (const auto& s : batch) {
    GLMPIPE_CHECK(s.slot >= 0 && s.slot < cache.slots()) << "KV slot " << s.slot << " outside [0, " << cache.slots() << ")";
    GLMPIPE_CHECK(s.past + s.len <= cache.max_seq() && s.past + s.len < max_positions)
        << "sequence in slot " << s.slot << " needs " << s.past + s.len << " positions; the KV cache holds "
        << cache.max_seq();
  }
  return hidden.to(compute_dtype(options_)).contiguous();
}

at::Tensor Shard::head(const at::Tensor& hidden) const {
  auto y = final_norm(hidden);  // [R, H]
  LinearWeight w = lm_head_;
  if (spec_.has_embedding && schema_.params.back().kind == ParamKind::kHead && !schema_.params.back().tied_to.empty())
    w.weight = word_embeddings_;  // tied (spec §1.3)
  at::Tensor logits = linear_forward(y, w).to(at::kFloat);  // [R, vocab]
  release_unit(static_cast<int>(config_.num_layers) + 2);
  return logits;
}

}  // namespace glmpipe
