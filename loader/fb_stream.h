// The fallback's view of one diverted connection: the client's bytes from
// the header block the kernel could not see whole onwards. It walks frames
// with the kernel's walker, assembles HEADERS + CONTINUATION (or an
// oversized HEADERS) into one block, decodes every block with the kernel's
// HPACK model continuing from the kernel's table, asks for a verdict and
// denies with the kernel's in-place rewrite. Pure: no sockets, no maps.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

extern "C" {
#include "userspace.h"
#include "fallback.h"
}

namespace gw {

struct FbVerdict {
  uint8_t verdict = GW_VERDICT_DENY;
  uint8_t reason = GW_REASON_POLICY;
  uint16_t rule = 0;
};

struct FbBlock {
  uint32_t stream = 0;
  bool request = false;  // opens a stream (else: trailers)
  bool big = false;      // continued, or over the kernel's bound
  const gw_hp_block* blk = nullptr;
  bool regranted = false;  // refers to a :path entry the server holds rewritten: an allow fails the connection
};

class FbStream {
 public:
  using Decide = std::function<FbVerdict(const FbBlock&)>;

  // Starts at a frame boundary past the preface, with the kernel's model.
  void Reset(const gw_h2_model& m, const gw_hp_keys& k);
  // The next n bytes go on unparsed (the kernel walked them before it
  // diverted the connection; the model is the one after them).
  void Passthrough(uint64_t n) { skip_ = n; }
  // Takes the next bytes the client sent; appends to *out what may go on
  // to the server now (same bytes, in order, denied paths rewritten).
  // Returns false once the connection cannot be followed (reason()).
  bool Feed(const uint8_t* p, size_t n, std::vector<uint8_t>* out);
  // Nothing held back and not inside a frame: the kernel may take over.
  bool AtBoundary() const { return !failed_ && pending_.empty() && skip_ == 0; }
  gw_h2_model Model() const;
  uint8_t reason() const { return reason_; }
  const gw_hp_block& last_block() const { return blk_; }

  Decide decide;  // called for every request block
  uint64_t blocks = 0, big_blocks = 0, allowed = 0, denied = 0, audited = 0;
  uint64_t continuation_reads = 0;  // CONTINUATION frame headers read (each once)

 private:
  bool Fail(uint8_t reason);
  // A HEADERS frame at pending_[pos]: 0 = need more bytes, >0 = bytes of the
  // frames holding the whole block (fragments filled), <0 = failed.
  long Assemble(size_t pos, gw_h2_frame f, std::vector<std::pair<size_t, size_t>>* frags);

  // the continued block being put together, offsets from its HEADERS frame
  struct Assembly {
    bool active = false;
    size_t o = 0;      // next frame to read
    size_t total = 0;  // block bytes so far
    uint8_t flags = 0;
    std::vector<std::pair<size_t, size_t>> frags;
  };
  Assembly asm_;
  gw_h2 h_{};
  gw_hp_block blk_{};    // the last block parsed
  gw_hp_spill spill_{};  // :path records pushed out of the table's ring
  gw_hp_keys k_{};
  std::vector<uint8_t> pending_;
  uint64_t skip_ = 0;
  bool failed_ = false;
  uint8_t reason_ = 0;
};

}  // namespace gw
