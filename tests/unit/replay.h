// Replays a client byte stream through the shared frame walker and HPACK
// model the way the sk_msg program sees it: data arrives in writes; NEED
// holds bytes back (cork), PASS n skips n bytes even across later writes
// (apply_bytes), BLOCK decides a whole HEADERS frame.
#pragma once
#include <functional>
#include <string>
#include <vector>

extern "C" {
#include "userspace.h"
}

struct Decided {
  uint32_t stream = 0;
  bool request = false;
  gw_hp_block blk{};
  uint32_t table_size = 0;
  uint32_t blk_off = 0, blk_len = 0;  // the header block within `frame`
  std::vector<unsigned char> frame;  // the whole HEADERS frame, as sent on
};

struct Replayer {
  gw_h2 h{};
  gw_hp_block blk{};
  gw_hp_spill spill{};
  gw_hp_keys k{0x1234, 0x5678};
  std::vector<unsigned char> pending;
  uint64_t skip = 0;  // bytes still covered by a PASS
  bool failed = false;
  std::vector<Decided> decided;
  std::vector<unsigned char> out;  // what the server receives
  // may rewrite the frame before it goes on
  std::function<void(Decided&, std::vector<unsigned char>&)> on_block;

  Replayer() { gw_h2_init(&h); }

  void Write(const unsigned char* p, size_t n) {
    if (failed) return;
    size_t used = 0;
    if (skip) {
      size_t s = std::min<uint64_t>(skip, n);
      out.insert(out.end(), p, p + s);
      skip -= s;
      used = s;
    }
    pending.insert(pending.end(), p + used, p + n);
    while (!pending.empty() && !failed) {
      gw_buf src{pending.data(), static_cast<__u32>(pending.size())};
      gw_h2_frame f{};
      __u32 need = 0;
      int act = gw_h2_next(&h, &src, src.len, &f, &need);
      if (act == GW_ACT_NEED) break;
      if (act == GW_ACT_FAIL || act == GW_ACT_DIVERT) {  // no fallback here: fails closed
        failed = true;
        break;
      }
      if (act == GW_ACT_PASS) {
        size_t s = std::min<size_t>(need, pending.size());
        out.insert(out.end(), pending.begin(), pending.begin() + s);
        skip = need - s;
        pending.erase(pending.begin(), pending.begin() + s);
        continue;
      }
      Decided d;
      d.stream = f.stream;
      d.request = f.is_request;
      d.blk_off = f.blk_off;
      d.blk_len = f.blk_len;
      gw_hp_parse_block(&blk, &h.table, &spill, pending.data() + f.blk_off, f.blk_len, &k);
      d.blk = blk;
      d.table_size = h.table.size;
      d.frame.assign(pending.begin(), pending.begin() + need);
      if (blk.st != GW_HP_DONE) {
        failed = true;
        h.reason = blk.err;
      }
      if (on_block && !failed) on_block(d, d.frame);
      decided.push_back(d);
      out.insert(out.end(), d.frame.begin(), d.frame.end());
      pending.erase(pending.begin(), pending.begin() + need);
    }
  }
};
