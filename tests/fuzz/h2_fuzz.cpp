// libFuzzer target for the shared frame walker and HPACK model: arbitrary
// client bytes, cut into writes where the input says, must never crash,
// read out of bounds or break the table model's invariants.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <algorithm>

#include "../unit/replay.h"
#include "fb_stream.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  Replayer r;
  // first byte: a write size (1..64); the rest: the client's stream, with
  // the connection preface put in front unless it is already there (the
  // seeds are whole captures)
  size_t chunk = (data[0] % 64) + 1;
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  if (size < 25 || memcmp(data + 1, preface, 24) != 0)
    r.Write(reinterpret_cast<const unsigned char*>(preface), 24);
  for (size_t off = 1; off < size; off += chunk) {
    size_t n = size - off < chunk ? size - off : chunk;
    r.Write(data + off, n);
    if (r.h.table.n > GW_HP_ENTRIES || r.h.table.size > r.h.table.max_size) abort();
    if (r.failed) break;
  }
  // where the kernel diverts, the fallback takes the rest from its model
  if (r.failed && r.h.stage != GW_H2_FAILED && (r.h.reason == GW_REASON_CONTINUATION || r.h.reason == GW_REASON_BOUND)) {
    gw::FbStream fb;
    gw_h2_model m{};
    m.last_stream = r.h.last_stream;
    m.table = r.h.table;
    m.has_spill = gw_hp_spill_used(&r.h.table, &r.spill);  // as the kernel hands it over
    if (m.has_spill) m.spill = r.spill;
    fb.Reset(m, r.k);
    fb.decide = [](const gw::FbBlock& b) {
      gw::FbVerdict v;
      v.verdict = (b.stream & 2) ? GW_VERDICT_DENY : GW_VERDICT_ALLOW;
      return v;
    };
    std::vector<unsigned char> out;
    for (size_t off = 0; off < r.pending.size(); off += chunk)
      if (!fb.Feed(r.pending.data() + off, std::min(chunk, r.pending.size() - off), &out)) break;
    if (out.size() > r.pending.size()) abort();  // never invents bytes
    gw_h2_model back = fb.Model();
    if (back.table.n > GW_HP_ENTRIES || back.table.size > back.table.max_size) abort();
  }
  for (const auto& d : r.decided) {
    if (d.blk.path_len > GW_PATH_MAX) abort();
    if (d.blk.st != GW_HP_DONE) continue;  // the connection fails here: nothing decided
    // a literal path found canonical has a non-empty service and method
    // (an indexed one takes validity and hashes from its table entry)
    bool literal = d.blk.path_how == GW_PATH_LIT_RAW || d.blk.path_how == GW_PATH_LIT_HUFF;
    if (literal && d.blk.path_valid && (d.blk.svc_len < 3 || d.blk.svc_len >= d.blk.path_len))
      abort();
    if (d.blk.path_valid && d.blk.path_long) abort();
  }
  return 0;
}
