// The fallback's stream processor (loader/fb_stream.cpp): it takes a
// connection where the kernel walker diverted it (HEADERS + CONTINUATION,
// or a HEADERS frame over the in-kernel bound), continues from the kernel's
// table model, decides and denies like the kernel, and ends at a frame
// boundary with a model the kernel can take back.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fb_stream.h"
#include "nghttp2_hd.h"
#include "replay.h"

namespace {

using Bytes = std::vector<unsigned char>;

void Frame(Bytes* out, uint8_t type, uint8_t flags, uint32_t stream, const unsigned char* p, size_t n) {
  out->push_back(uint8_t(n >> 16));
  out->push_back(uint8_t(n >> 8));
  out->push_back(uint8_t(n));
  out->push_back(type);
  out->push_back(flags);
  for (int s = 24; s >= 0; s -= 8) out->push_back(uint8_t(stream >> s));
  out->insert(out->end(), p, p + n);
}

struct Call {
  std::string method;
  size_t metadata;  // bytes of x-big
};

// A client stream as python h2 writes it: blocks over 16 KiB split into
// HEADERS + CONTINUATION, each request followed by its DATA frame.
struct Stream {
  Bytes bytes;
  std::vector<std::string> paths;
};

Stream MakeStream(const std::vector<Call>& calls, size_t max_frame, bool continuation) {
  Deflater def;
  Stream s;
  const char* preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  s.bytes.assign(preface, preface + 24);
  Frame(&s.bytes, 0x4, 0, 0, nullptr, 0);  // SETTINGS
  uint32_t sid = 1;
  for (const auto& c : calls) {
    std::string path = "/cloudcity.DoorManager/" + c.method;
    Headers h = {{":method", "POST"}, {":scheme", "http"}, {":path", path}, {":authority", "10.250.0.2:50051"},
                 {"content-type", "application/grpc"}, {"te", "trailers"}};
    if (c.metadata) h.push_back({"x-big", std::string(c.metadata, 'b')});
    Bytes blk = def.Deflate(h);
    if (!continuation || blk.size() <= max_frame) {
      Frame(&s.bytes, 0x1, 0x4, sid, blk.data(), blk.size());
    } else {
      for (size_t off = 0; off < blk.size(); off += max_frame) {
        size_t len = std::min(max_frame, blk.size() - off);
        bool last = off + len == blk.size();
        Frame(&s.bytes, off == 0 ? 0x1 : 0x9, last ? 0x4 : 0, sid, blk.data() + off, len);
      }
    }
    const unsigned char req[] = {0, 0, 0, 0, 2, 8, 1};
    Frame(&s.bytes, 0x0, 0x1, sid, req, sizeof(req));
    s.paths.push_back(path);
    sid += 2;
  }
  return s;
}

// Decodes every request block of a client stream as the server would
// (libnghttp2): the :path values in order. False if the HPACK is broken.
bool ServerPaths(const Bytes& b, std::vector<std::string>* paths, size_t* table_size) {
  Inflater inf;
  size_t o = 24;
  Bytes blk;
  while (o + 9 <= b.size()) {
    size_t len = (size_t(b[o]) << 16) | (size_t(b[o + 1]) << 8) | b[o + 2];
    uint8_t type = b[o + 3], flags = b[o + 4];
    if (type == 0x1 || type == 0x9) {
      blk.insert(blk.end(), b.begin() + long(o + 9), b.begin() + long(o + 9 + len));
      if (flags & 0x4) {
        if (!inf.Inflate(blk.data(), blk.size(), paths)) return false;
        blk.clear();
      }
    }
    o += 9 + len;
  }
  *table_size = inf.TableSize();
  return o == b.size();
}

struct Diversion {
  Bytes server;  // what the server receives: the kernel's part, then the helper's
  gw::FbStream fb;
  std::vector<std::string> decided;
  bool diverted = false;
};

// The kernel walks until it diverts; the fallback takes the rest in
// pieces of `chunk` bytes, denying `deny`.
void Divert(const Stream& s, size_t chunk, const std::string& deny, Diversion* run) {
  Replayer r;
  r.Write(s.bytes.data(), s.bytes.size());
  run->server = r.out;
  if (!r.failed) return;
  run->diverted = true;
  gw_h2_model m{};
  m.last_stream = r.h.last_stream;
  m.table = r.h.table;
  m.has_spill = gw_hp_spill_used(&r.h.table, &r.spill);  // as the kernel hands it over
  if (m.has_spill) m.spill = r.spill;
  run->fb.Reset(m, r.k);
  run->fb.decide = [&, k = r.k](const gw::FbBlock& b) {
    gw::FbVerdict v;
    std::string p(b.blk->path, b.blk->path_len < GW_PATH_MAX ? b.blk->path_len : GW_PATH_MAX);
    bool denied = false;
    if (b.blk->path_how == GW_PATH_IDX_DYN) {
      denied = b.blk->h_exact == gw_siphash((const unsigned char*)deny.data(), deny.size(), k.k0, k.k1, GW_MATCH_EXACT);
      p = denied ? deny : "(indexed)";
    } else {
      denied = p == deny;
    }
    run->decided.push_back(p);
    v.verdict = denied ? GW_VERDICT_DENY : GW_VERDICT_ALLOW;
    return v;
  };
  Bytes rest = r.pending;
  for (size_t off = 0; off < rest.size(); off += chunk)
    ASSERT_TRUE(run->fb.Feed(rest.data() + off, std::min(chunk, rest.size() - off), &run->server));
}

TEST(Fallback, ContinuedBlocksAllowedPassUnchangedAndHandBack) {
  Stream s = MakeStream({{"GetName", 0}, {"GetName", 40000}, {"GetLocation", 40000}, {"GetName", 0}}, 16384, true);
  for (size_t chunk : {size_t(1), size_t(7), size_t(1000), size_t(1 << 20)}) {
    Diversion run;
    Divert(s, chunk, "none", &run);
    ASSERT_TRUE(run.diverted);
    EXPECT_EQ(run.server, s.bytes) << "chunk " << chunk;  // every byte, in order, unchanged
    EXPECT_TRUE(run.fb.AtBoundary());
    EXPECT_EQ(run.fb.big_blocks, 2u);
    EXPECT_EQ(run.fb.blocks, 3u);  // the kernel decided the first
    std::vector<std::string> paths;
    size_t table = 0;
    ASSERT_TRUE(ServerPaths(s.bytes, &paths, &table));
    EXPECT_EQ(run.fb.Model().table.size, table);  // the model the kernel takes back is in step
    EXPECT_EQ(run.fb.Model().last_stream, 7u);
  }
}

TEST(Fallback, DeniedBigRequestRewrittenAloneHpackStaysConsistent) {
  const std::string deny = "/cloudcity.DoorManager/SetAccessCode";
  Stream s = MakeStream({{"GetName", 40000}, {"SetAccessCode", 40000}, {"GetName", 0}, {"SetAccessCode", 0}}, 16384, true);
  Diversion run;
  Divert(s, 4096, deny, &run);
  ASSERT_TRUE(run.diverted);
  EXPECT_EQ(run.fb.denied, 2u);
  EXPECT_EQ(run.fb.allowed, 2u);
  std::vector<std::string> paths;
  size_t table = 0;
  ASSERT_TRUE(ServerPaths(run.server, &paths, &table));  // the server decodes every block
  ASSERT_EQ(paths.size(), 4u);
  EXPECT_EQ(paths[0], "/cloudcity.DoorManager/GetName");
  EXPECT_NE(paths[1], deny);
  EXPECT_NE(paths[1][0], '/');  // unroutable: the server answers UNIMPLEMENTED
  EXPECT_EQ(paths[2], "/cloudcity.DoorManager/GetName");
  EXPECT_NE(paths[3], deny);
}

TEST(Fallback, OversizedSingleHeadersFrameDiverted) {
  Stream s = MakeStream({{"GetName", 0}, {"GetLocation", 30000}, {"GetName", 0}}, 1 << 20, false);
  Diversion run;
  Divert(s, 512, "none", &run);
  ASSERT_TRUE(run.diverted);
  EXPECT_EQ(run.server, s.bytes);
  EXPECT_EQ(run.fb.big_blocks, 1u);
}

TEST(Fallback, ContinuationOfAnotherStreamFailsClosed) {
  Stream s = MakeStream({{"GetName", 40000}}, 16384, true);
  // the first CONTINUATION names stream 3: a protocol error
  size_t o = 24 + 9, first = (size_t(s.bytes[o]) << 16 | size_t(s.bytes[o + 1]) << 8 | s.bytes[o + 2]);
  size_t cont = o + 9 + first;
  ASSERT_EQ(s.bytes[cont + 3], 0x9);
  s.bytes[cont + 8] = 3;
  Replayer r;
  r.Write(s.bytes.data(), s.bytes.size());
  ASSERT_TRUE(r.failed);
  gw::FbStream fb;
  gw_h2_model m{};
  m.table = r.h.table;
  m.has_spill = gw_hp_spill_used(&r.h.table, &r.spill);  // as the kernel hands it over
  if (m.has_spill) m.spill = r.spill;
  fb.Reset(m, r.k);
  Bytes out;
  EXPECT_FALSE(fb.Feed(r.pending.data(), r.pending.size(), &out));
  EXPECT_EQ(fb.reason(), GW_REASON_PROTOCOL);
  EXPECT_TRUE(out.empty());  // nothing of the block went on
}

}  // namespace

// The kernel diverts a whole held message whose first bytes it walked
// already (a cork that ends in a continued block): the helper forwards
// those unparsed and takes over at the next frame.
TEST(Fallback, PassthroughOfBytesTheKernelWalked) {
  Stream s = MakeStream({{"GetName", 0}, {"GetName", 40000}}, 16384, true);
  Replayer r;
  r.Write(s.bytes.data(), s.bytes.size());
  ASSERT_TRUE(r.failed);  // diverted at the continued block
  // pretend the kernel walked the first 20 bytes of what it diverted: the
  // helper must pass exactly those on unread, whatever they are
  Bytes rest(20, 0xfa);
  rest.insert(rest.end(), r.pending.begin(), r.pending.end());
  gw::FbStream fb;
  gw_h2_model m{};
  m.last_stream = r.h.last_stream;
  m.table = r.h.table;
  m.has_spill = gw_hp_spill_used(&r.h.table, &r.spill);  // as the kernel hands it over
  if (m.has_spill) m.spill = r.spill;
  fb.Reset(m, r.k);
  fb.Passthrough(20);
  int blocks = 0;
  fb.decide = [&](const gw::FbBlock&) {
    blocks++;
    return gw::FbVerdict{GW_VERDICT_ALLOW, 0, 0};
  };
  Bytes out;
  ASSERT_TRUE(fb.Feed(rest.data(), rest.size(), &out));
  EXPECT_EQ(out, rest);  // byte for byte, the 20 garbage bytes included
  EXPECT_EQ(blocks, 1);
  EXPECT_TRUE(fb.AtBoundary());
}

// A block cut into 20000 empty CONTINUATION frames, fed a frame at a time:
// each frame header is read once (reassembly is linear, not quadratic),
// and the block still decodes and passes byte for byte.
TEST(Fallback, ManyContinuationFramesAreReadOnce) {
  Stream s = MakeStream({{"GetName", 40000}}, 16384, true);
  Replayer r;
  r.Write(s.bytes.data(), s.bytes.size());
  ASSERT_TRUE(r.failed);
  // insert empty CONTINUATION frames right after the HEADERS frame
  Bytes rest = r.pending;
  size_t hlen = 9 + ((size_t(rest[0]) << 16) | (size_t(rest[1]) << 8) | rest[2]);
  Bytes empties;
  const int kEmpty = 20000;
  for (int i = 0; i < kEmpty; i++) Frame(&empties, 0x9, 0, 1, nullptr, 0);
  rest.insert(rest.begin() + long(hlen), empties.begin(), empties.end());
  gw::FbStream fb;
  gw_h2_model m{};
  m.last_stream = r.h.last_stream;
  m.table = r.h.table;
  m.has_spill = gw_hp_spill_used(&r.h.table, &r.spill);  // as the kernel hands it over
  if (m.has_spill) m.spill = r.spill;
  fb.Reset(m, r.k);
  int blocks = 0;
  fb.decide = [&](const gw::FbBlock&) {
    blocks++;
    return gw::FbVerdict{GW_VERDICT_ALLOW, 0, 0};
  };
  Bytes out;
  for (size_t off = 0; off < rest.size(); off += 9) ASSERT_TRUE(fb.Feed(rest.data() + off, std::min<size_t>(9, rest.size() - off), &out));
  EXPECT_EQ(out, rest);
  EXPECT_EQ(blocks, 1);
  EXPECT_LE(fb.continuation_reads, uint64_t(kEmpty + 4));
}

// A header name of 64 KiB or more (only the fallback sees blocks that big)
// fails the connection: the table model keeps name lengths in 16 bits.
TEST(Fallback, HeaderNameOf64KiBFailsClosed) {
  Bytes blk = {0x00, 0x7f};  // literal without indexing, new name, length 70000 (7-bit prefix)
  for (uint32_t v = 70000 - 127; ; v >>= 7) {
    if (v < 128) {
      blk.push_back(uint8_t(v));
      break;
    }
    blk.push_back(uint8_t((v & 0x7f) | 0x80));
  }
  blk.insert(blk.end(), 70000, 'n');
  blk.push_back(1);
  blk.push_back('x');
  Bytes frames;
  for (size_t off = 0; off < blk.size(); off += 16384) {
    size_t len = std::min<size_t>(16384, blk.size() - off);
    Frame(&frames, off == 0 ? 0x1 : 0x9, off + len == blk.size() ? 0x4 : 0, 1, blk.data() + off, len);
  }
  gw::FbStream fb;
  gw_h2_model m{};
  gw_hp_table_init(&m.table);
  fb.Reset(m, gw_hp_keys{1, 2});
  fb.decide = [](const gw::FbBlock&) { return gw::FbVerdict{GW_VERDICT_ALLOW, 0, 0}; };
  Bytes out;
  EXPECT_FALSE(fb.Feed(frames.data(), frames.size(), &out));
  EXPECT_EQ(fb.reason(), GW_REASON_BOUND);
  EXPECT_TRUE(out.empty());
}

// Grants reaching live channels, in the helper too: a literal :path it
// denies goes to the server rewritten; after the model is handed back and
// taken again (as at the next diversion), a reference to that entry that is
// now allowed fails the connection (GW_REASON_REGRANT) rather than reach the
// server as the rewritten path. A reference that stays denied is rewritten
// to the static ":path /index.html" as before.
TEST(Fallback, AnEntryDeniedWhenEnteredIsNotPassedAsAStaleDeny) {
  const std::string path = "/cloudcity.DoorManager/SetAccessCode";
  Bytes lit = {0x83, 0x86, 0x44, static_cast<uint8_t>(path.size())};  // POST, http, :path literal, indexed
  lit.insert(lit.end(), path.begin(), path.end());
  const Bytes ref = {0x83, 0x86, 0xbe};  // :path: dynamic 62
  for (uint8_t later : {GW_VERDICT_DENY, GW_VERDICT_ALLOW, GW_VERDICT_AUDIT}) {
    gw::FbStream fb;
    gw_h2_model m{};
    gw_hp_table_init(&m.table);
    fb.Reset(m, gw_hp_keys{1, 2});
    fb.decide = [](const gw::FbBlock&) { return gw::FbVerdict{GW_VERDICT_DENY, GW_REASON_POLICY, 1}; };
    Bytes frames, out;
    Frame(&frames, 0x1, 0x5, 1, lit.data(), lit.size());
    ASSERT_TRUE(fb.Feed(frames.data(), frames.size(), &out));
    ASSERT_EQ(out.size(), frames.size());
    EXPECT_EQ(out[9 + 4], '-');  // the path's first byte, rewritten
    gw::FbStream again;  // handed back, taken again
    again.Reset(fb.Model(), gw_hp_keys{1, 2});
    again.decide = [later](const gw::FbBlock& b) {
      EXPECT_TRUE(b.regranted);
      return gw::FbVerdict{later, GW_REASON_POLICY, 1};
    };
    frames.clear();
    out.clear();
    Frame(&frames, 0x1, 0x5, 3, ref.data(), ref.size());
    bool ok = again.Feed(frames.data(), frames.size(), &out);
    if (later == GW_VERDICT_DENY) {
      ASSERT_TRUE(ok);
      EXPECT_EQ(out[9 + 2], 0x85);
    } else {
      EXPECT_FALSE(ok) << int(later);
      EXPECT_EQ(again.reason(), GW_REASON_REGRANT);
      EXPECT_TRUE(out.empty());
    }
  }
}

// The helper fails a connection where the kernel's walker does, naming the
// same reason: a denied literal :path that is not canonical (its bytes after
// the first are the client's, never rewritten), one too long to check, and
// a request block with no :path; a canonical one is rewritten to '-...'.
TEST(Fallback, DeniedPathsThatCannotBeMadeUnroutableFailTheConnection) {
  auto lit = [](const std::string& path) {
    Bytes b = {0x83, 0x86, 0x04};  // POST, http, :path literal without indexing
    if (path.size() < 127) {
      b.push_back(static_cast<uint8_t>(path.size()));
    } else {  // 7-bit prefix full, the rest in 7-bit groups (RFC 7541 5.1)
      b.push_back(0x7f);
      for (size_t n = path.size() - 127;; n >>= 7) {
        b.push_back(static_cast<uint8_t>((n & 0x7f) | (n >= 0x80 ? 0x80 : 0)));
        if (n < 0x80) break;
      }
    }
    b.insert(b.end(), path.begin(), path.end());
    return b;
  };
  struct Case {
    Bytes block;
    bool ok;
    uint8_t reason;
  };
  const std::vector<Case> cases = {
      {lit("/cloudcity.DoorManager/SetAccessCode"), true, 0},
      {lit("/x/../cloudcity.DoorManager/SetAccessCode"), false, GW_REASON_BAD_PATH},
      {lit("%2Fcloudcity.DoorManager/SetAccessCode"), false, GW_REASON_BAD_PATH},
      {lit("/cloudcity.DoorManager/" + std::string(240, 'A')), false, GW_REASON_PATH_LONG},
      {Bytes{0x83, 0x86}, false, GW_REASON_BAD_PATH},
  };
  for (const auto& c : cases) {
    gw::FbStream fb;
    gw_h2_model m{};
    gw_hp_table_init(&m.table);
    fb.Reset(m, gw_hp_keys{1, 2});
    // the kernel's decision: gw_hp_path_reason's, or the policy's deny
    fb.decide = [](const gw::FbBlock& b) {
      int r = gw_hp_path_reason(b.blk);
      return gw::FbVerdict{GW_VERDICT_DENY, static_cast<uint8_t>(r >= 0 ? r : GW_REASON_POLICY), 0};
    };
    Bytes frames, out;
    Frame(&frames, 0x1, 0x5, 1, c.block.data(), c.block.size());
    EXPECT_EQ(fb.Feed(frames.data(), frames.size(), &out), c.ok) << c.block.size();
    if (c.ok) {
      EXPECT_EQ(out[9 + 4], '-');
    } else {
      EXPECT_EQ(fb.reason(), c.reason) << c.block.size();
    }
  }
}
