// libFuzzer target for the shared frame walker and HPACK model: arbitrary
// client bytes, cut into writes where the input says, must never crash,
// read out of bounds or break the table model's invariants.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "../unit/replay.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  Replayer r;
  // first byte: a write size (1..64); the rest: the stream after the preface
  size_t chunk = (data[0] % 64) + 1;
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  r.Write(reinterpret_cast<const unsigned char*>(preface), 24);
  for (size_t off = 1; off < size; off += chunk) {
    size_t n = size - off < chunk ? size - off : chunk;
    r.Write(data + off, n);
    if (r.h.table.n > GW_HP_ENTRIES || r.h.table.size > r.h.table.max_size) abort();
    if (r.failed) break;
  }
  for (const auto& d : r.decided)
    if (d.blk.path_len > GW_PATH_MAX || (d.blk.path_valid && d.blk.svc_len < 3)) abort();
  return 0;
}
