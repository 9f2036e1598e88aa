#include "model/tokenizer/byte_pair.h"

#include <climits>
#include <queue>
#include <tuple>

#include "common/error.h"

namespace glmpipe {

namespace {

int rank_of(std::string_view s, const RankMap& ranks) {
  auto it = ranks.find(s);
  return it == ranks.end() ? INT_MAX : it->second;
}

// A candidate merge of part `left` (starting at byte `left`) with the part after it, valid while
// the two parts still end at `mid` and `end`.
struct Merge {
  int rank;
  size_t left, mid, end;
  bool operator>(const Merge& o) const { return std::tie(rank, left) > std::tie(o.rank, o.left); }
};

}  // namespace

std::vector<int> byte_pair_encode(std::string_view piece, const RankMap& ranks) {
  const size_t n = piece.size();
  if (n == 0) return {};
  if (int r = rank_of(piece, ranks); r != INT_MAX) return {r};
  // Parts are identified by their first byte; end_[i] is one past the part's last byte and
  // next_/prev_ link the live parts (n = none).
  std::vector<size_t> end(n), next(n), prev(n);
  for (size_t i = 0; i < n; ++i) end[i] = i + 1, next[i] = i + 1, prev[i] = i == 0 ? n : i - 1;
  std::priority_queue<Merge, std::vector<Merge>, std::greater<Merge>> heap;
  auto push = [&](size_t left) {
    if (left >= n || next[left] >= n) return;
    const size_t right = next[left];
    const int r = rank_of(piece.substr(left, end[right] - left), ranks);
    if (r != INT_MAX) heap.push(Merge{r, left, end[left], end[right]});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Merge m = heap.top();
    heap.pop();
    const size_t right = next[m.left];
    if (end[m.left] != m.mid || right >= n || end[right] != m.end) continue;  // stale
    // `left` absorbs `right`; `left` is alive as long as it is reachable (its start never moves).
    end[m.left] = m.end;
    next[m.left] = next[right];
    if (next[right] < n) prev[next[right]] = m.left;
    end[right] = 0;  // dead: no entry naming it as a left part or a right part can match again
    if (prev[m.left] < n) push(prev[m.left]);
    push(m.left);
  }
  std::vector<int> out;
  for (size_t i = 0; i < n; i = next[i]) {
    const int r = rank_of(piece.substr(i, end[i] - i), ranks);
    GLMPIPE_CHECK(r != INT_MAX) << "byte-level BPE: byte 0x" << std::hex
                                << int(static_cast<unsigned char>(piece[i])) << " has no rank";
    out.push_back(r);
  }
  return out;
}

}  // namespace glmpipe
