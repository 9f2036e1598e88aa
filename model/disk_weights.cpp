// DiskWeights: views of mmapped weights for the disk tier (see disk_weights.h).
#include "model/disk_weights.h"

#include "checkpoint/offload_folder.h"
#include "common/error.h"

namespace glmpipe {

void DiskWeights::open(const Checkpoint& ckpt, const std::vector<Want>& wants, const std::string& offload_dir) {
  sources_.clear();
  sources_.push_back(ckpt);
  std::vector<OffloadUnit> convert;  // one entry per unit, in the order wanted
  std::map<std::string, bool> from_copy;
  at::ScalarType copy_dtype = at::ScalarType::Undefined;
  for (const Want& w : wants) {
    const bool direct = ckpt.info(w.name).dtype == w.dtype && ckpt.map(w.name).is_contiguous();
    from_copy[w.name] = !direct;
    if (direct) continue;
    GLMPIPE_CHECK(copy_dtype == at::ScalarType::Undefined || copy_dtype == w.dtype)
        << "disk tier: one offload dtype per shard (" << copy_dtype << " and " << w.dtype << ")";
    copy_dtype = w.dtype;
    if (convert.empty() || convert.back().unit != w.unit_name) convert.push_back({w.unit_name, {}});
    convert.back().names.push_back(w.name);
  }
  if (!convert.empty()) {
    OffloadResult r = open_offload_folder(ckpt, offload_dir, copy_dtype, convert);
    converted_ = r.units_written;
    offload_folder_ = r.folder.dir();
    sources_.push_back(r.folder);
  }
  for (const Want& w : wants) {
    const size_t src = from_copy[w.name] ? 1 : 0;
    at::Tensor t = sources_[src].map(w.name);
    GLMPIPE_CHECK(t.scalar_type() == w.dtype && t.is_contiguous())
        << sources_[src].dir() << ": " << w.name << " is " << t.scalar_type() << ", wanted " << w.dtype;
    views_[w.name] = View{src, t};
    by_unit_[w.unit].push_back(w.name);
    bytes_ += t.nbytes();
  }
}

at::Tensor DiskWeights::view(const std::string& name) const {
  auto it = views_.find(name);
  GLMPIPE_CHECK(it != views_.end()) << "disk tier: " << name << " is not served from disk";
  return it->second.tensor;
}

void DiskWeights::release(int unit) const {
  auto it = by_unit_.find(unit);
  if (it != by_unit_.end())
    for (const std::string& name : it->second) sources_[views_.at(name).source].release(name);
  auto al = aliases_.find(unit);
  if (al != aliases_.end())
    for (int other : al->second)
      if (other != unit) release(other);
}

bool DiskWeights::holds(const at::Tensor& t) const {
  if (!t.defined()) return false;
  for (const auto& [name, v] : views_)
    if (v.tensor.data_ptr() == t.data_ptr()) return true;
  return false;
}

}  // namespace glmpipe
