#include "fb_stream.h"

#include <algorithm>

namespace gw {

void FbStream::Reset(const gw_h2_model& m, const gw_hp_keys& k) {
  h_ = gw_h2{};
  gw_h2_init(&h_);
  h_.stage = GW_H2_FRAMES;
  h_.last_stream = m.last_stream;
  h_.table = m.table;
  if (m.has_spill)
    spill_ = m.spill;
  else
    spill_ = gw_hp_spill{};
  k_ = k;
  pending_.clear();
  skip_ = 0;
  failed_ = false;
  reason_ = 0;
  asm_ = Assembly{};
}

gw_h2_model FbStream::Model() const {
  gw_h2_model m{};
  m.last_stream = h_.last_stream;
  m.table = h_.table;
  m.has_spill = gw_hp_spill_used(&h_.table, &spill_);
  if (m.has_spill) m.spill = spill_;
  return m;
}

bool FbStream::Fail(uint8_t reason) {
  failed_ = true;
  asm_.active = false;
  reason_ = reason;
  pending_.clear();
  return false;
}

long FbStream::Assemble(size_t pos, gw_h2_frame f, std::vector<std::pair<size_t, size_t>>* frags) {
  const size_t avail = pending_.size() - pos;
  const uint8_t* p = pending_.data() + pos;
  if (!asm_.active) {
    size_t o = H2_FRAME_HEADER_LEN + f.len;
    if (f.len > GW_FB_MAX_BLOCK) return Fail(GW_REASON_BOUND), -1;
    if (avail < o) return 0;
    gw_buf src{p, static_cast<__u32>(o)};
    if (gw_h2_headers_span(&src, &f)) return Fail(GW_REASON_PROTOCOL), -1;
    asm_.frags.assign(1, {f.blk_off, f.blk_len});
    asm_.total = f.blk_len;
    asm_.flags = f.flags;
    asm_.o = o;
    asm_.active = true;
  }
  // Frames already checked are not read again when more bytes arrive:
  // reassembly is linear in the block, however it is cut into writes.
  while (!(asm_.flags & H2_FLAG_END_HEADERS)) {
    // RFC 9113 6.10: only CONTINUATION frames of the same stream may follow
    gw_buf at{p + asm_.o, static_cast<__u32>(avail - asm_.o)};
    gw_h2_frame c{};
    if (gw_h2_read_header(&at, &c)) return 0;
    if (avail < asm_.o + H2_FRAME_HEADER_LEN + c.len) return 0;
    continuation_reads++;
    if (c.type != H2_FRAME_CONTINUATION || c.stream != f.stream) return Fail(GW_REASON_PROTOCOL), -1;
    if (asm_.total + c.len > GW_FB_MAX_BLOCK) return Fail(GW_REASON_BOUND), -1;
    asm_.frags.push_back({asm_.o + H2_FRAME_HEADER_LEN, c.len});
    asm_.total += c.len;
    asm_.flags = c.flags;
    asm_.o += H2_FRAME_HEADER_LEN + c.len;
  }
  frags->clear();
  for (const auto& fr : asm_.frags) frags->push_back({pos + fr.first, fr.second});
  asm_.active = false;
  return static_cast<long>(asm_.o);
}

bool FbStream::Feed(const uint8_t* p, size_t n, std::vector<uint8_t>* out) {
  if (failed_) return false;
  size_t used = 0;
  if (skip_) {
    size_t s = static_cast<size_t>(std::min<uint64_t>(skip_, n));
    out->insert(out->end(), p, p + s);
    skip_ -= s;
    used = s;
  }
  pending_.insert(pending_.end(), p + used, p + n);
  size_t pos = 0;
  std::vector<std::pair<size_t, size_t>> frags;
  std::vector<uint8_t> block;
  while (pos < pending_.size()) {
    gw_buf src{pending_.data() + pos, static_cast<__u32>(std::min<size_t>(pending_.size() - pos, UINT32_MAX))};
    gw_h2_frame f{};
    __u32 need = 0;
    int act = gw_h2_next(&h_, &src, src.len, &f, &need);
    if (act == GW_ACT_NEED) break;
    if (act == GW_ACT_FAIL) return Fail(h_.reason);
    if (act == GW_ACT_PASS) {
      size_t s = std::min<size_t>(need, pending_.size() - pos);
      out->insert(out->end(), pending_.begin() + pos, pending_.begin() + pos + s);
      skip_ = need - s;
      pos += s;
      continue;
    }
    size_t span;
    const bool big = act == GW_ACT_DIVERT;
    if (!big) {
      span = need;
      frags.assign(1, {pos + f.blk_off, f.blk_len});
    } else {
      long r = Assemble(pos, f, &frags);
      if (r < 0) return false;
      if (r == 0) {
        // hold the frames back until the block is whole, within the bound
        if (pending_.size() - pos > GW_FB_MAX_BLOCK + 64 * 1024) return Fail(GW_REASON_BOUND);
        break;
      }
      span = static_cast<size_t>(r);
      f.is_request = f.stream > h_.last_stream;
      if (f.is_request) h_.last_stream = f.stream;
    }
    block.clear();
    for (const auto& fr : frags) block.insert(block.end(), pending_.begin() + fr.first, pending_.begin() + fr.first + fr.second);
    if (gw_hp_parse_block(&blk_, &h_.table, &spill_, block.data(), static_cast<__u32>(block.size()), &k_) != 0)
      return Fail(blk_.st == GW_HP_ERR ? blk_.err : uint8_t(GW_REASON_PROTOCOL));
    h_.blocks++;
    blocks++;
    if (big) big_blocks++;
    // a block that names a :path is decided whatever its stream id says
    // (gw_walk_decide: a server may take it as a new request)
    if ((f.is_request || blk_.npath) && decide) {
      FbBlock fb{f.stream, f.is_request != 0, big, &blk_, gw_hp_path_regranted(&blk_) != 0};
      FbVerdict v = decide(fb);
      if (v.verdict != GW_VERDICT_DENY && gw_hp_path_regranted(&blk_)) return Fail(GW_REASON_REGRANT);
      if (v.verdict == GW_VERDICT_ALLOW) {
        allowed++;
      } else if (v.verdict == GW_VERDICT_AUDIT) {
        audited++;
      } else {
        denied++;
        if (blk_.npath > 1) return Fail(GW_REASON_BAD_PATH);
        gw_buf bs{block.data(), static_cast<__u32>(block.size())};
        __u32 off = 0;
        __u8 val = 0;
        int r = gw_hp_deny_rewrite(&blk_, &bs, &off, &val);
        // as the kernel's walker names it: the decision's reason (a :path too
        // long, a lost table entry), a bad :path where a policy denied it
        if (r < 0) return Fail(v.reason == GW_REASON_POLICY ? uint8_t(GW_REASON_BAD_PATH) : v.reason);
        if (r == 0) {  // the block offset, back in the frame it came in
          size_t at = off;
          for (const auto& fr : frags) {
            if (at < fr.second) {
              pending_[fr.first + at] = val;
              break;
            }
            at -= fr.second;
          }
          gw_hp_mark_rewritten(&blk_, &h_.table, &spill_);
        }
      }
    }
    out->insert(out->end(), pending_.begin() + pos, pending_.begin() + pos + span);
    pos += span;
  }
  pending_.erase(pending_.begin(), pending_.begin() + pos);
  return true;
}

}  // namespace gw
