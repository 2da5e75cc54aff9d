// The HPACK model against RFC 7541 Appendix C: decoded :path, dynamic
// table size after every block, evictions, Huffman and raw strings.
#include <gtest/gtest.h>

#include <string>
#include <vector>

extern "C" {
#include "userspace.h"
}

namespace {

std::vector<unsigned char> Hex(const std::string& h) {
  std::vector<unsigned char> out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<unsigned char>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

// Hex of a literal :path with incremental indexing, name static 4, raw value
// (shorter than 127 bytes).
std::string LitPath(const std::string& p) {
  char h[8];
  std::snprintf(h, sizeof(h), "44%02x", static_cast<unsigned>(p.size()));
  std::string out = h;
  for (unsigned char c : p) {
    std::snprintf(h, sizeof(h), "%02x", c);
    out += h;
  }
  return out;
}

struct Model {
  gw_hp_table t{};
  gw_hp_spill sp{};
  gw_hp_block b{};
  gw_hp_keys k{1, 2};
  Model() { gw_hp_table_init(&t); }
  int Parse(const std::string& hex) {
    auto bytes = Hex(hex);
    return gw_hp_parse_block(&b, &t, &sp, bytes.data(), static_cast<__u32>(bytes.size()), &k);
  }
};

uint64_t ExactHash(const std::string& s, const gw_hp_keys& k) {
  unsigned char buf[GW_PATH_MAX] = {};
  std::copy(s.begin(), s.end(), buf);
  return gw_siphash(buf, static_cast<__u32>(s.size()), k.k0, k.k1, GW_MATCH_EXACT);
}

}  // namespace

// C.3: requests without Huffman; C.4: the same with Huffman.
TEST(HpackRfc, C3RequestsRaw) {
  Model m;
  ASSERT_EQ(m.Parse("828684410f7777772e6578616d706c652e636f6d"), 0);
  EXPECT_EQ(m.t.size, 57u);
  EXPECT_EQ(m.b.npath, 1);
  EXPECT_EQ(m.b.path_how, GW_PATH_IDX_STATIC);
  EXPECT_FALSE(m.b.path_valid);  // "/" is no /service/method
  ASSERT_EQ(m.Parse("828684be58086e6f2d6361636865"), 0);
  EXPECT_EQ(m.t.size, 110u);
  ASSERT_EQ(m.Parse("828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"), 0);
  EXPECT_EQ(m.t.size, 164u);
  EXPECT_EQ(m.t.n, 3u);
  EXPECT_EQ(m.b.path_len, 11);  // /index.html
}

TEST(HpackRfc, C4RequestsHuffman) {
  Model m;
  ASSERT_EQ(m.Parse("828684418cf1e3c2e5f23a6ba0ab90f4ff"), 0);
  EXPECT_EQ(m.t.size, 57u);
  ASSERT_EQ(m.Parse("828684be5886a8eb10649cbf"), 0);
  EXPECT_EQ(m.t.size, 110u);
  ASSERT_EQ(m.Parse("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"), 0);
  EXPECT_EQ(m.t.size, 164u);
  EXPECT_EQ(m.t.n, 3u);
}

// C.5/C.6: responses with a 256-byte table: evictions.
TEST(HpackRfc, C5ResponsesEvictRaw) {
  Model m;
  m.t.max_size = 256;
  ASSERT_EQ(m.Parse("4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a32312047"
                    "4d546e1768747470733a2f2f7777772e6578616d706c652e636f6d"), 0);
  EXPECT_EQ(m.t.size, 222u);
  ASSERT_EQ(m.Parse("4803333037c1c0bf"), 0);
  EXPECT_EQ(m.t.size, 222u);
  ASSERT_EQ(m.Parse("88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a6970773866"
                    "6f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630"
                    "303b2076657273696f6e3d31"), 0);
  EXPECT_EQ(m.t.size, 215u);
  EXPECT_EQ(m.t.n, 3u);
  EXPECT_EQ(m.b.npath, 0);
}

TEST(HpackRfc, C6ResponsesEvictHuffman) {
  Model m;
  m.t.max_size = 256;
  ASSERT_EQ(m.Parse("488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863"
                    "c78f0b97c8e9ae82ae43d3"), 0);
  EXPECT_EQ(m.t.size, 222u);
  ASSERT_EQ(m.Parse("4883640effc1c0bf"), 0);
  EXPECT_EQ(m.t.size, 222u);
  ASSERT_EQ(m.Parse("88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b3"
                    "35dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007"), 0);
  EXPECT_EQ(m.t.size, 215u);
}

TEST(HpackModel, PathFormsAndIndexedReferences) {
  Model m;
  // 44 = literal with incremental indexing, name :path (static 4), raw value
  std::string path = "/cloudcity.DoorManager/GetName";
  char hdr[8];
  snprintf(hdr, sizeof(hdr), "44%02zx", path.size());
  std::string hex = hdr;
  for (unsigned char c : path) {
    char h[3];
    snprintf(h, sizeof(h), "%02x", c);
    hex += h;
  }
  ASSERT_EQ(m.Parse(hex), 0);
  EXPECT_EQ(m.b.path_how, GW_PATH_LIT_RAW);
  EXPECT_TRUE(m.b.path_valid);
  EXPECT_EQ(std::string(m.b.path, m.b.path_len), path);
  EXPECT_EQ(m.b.svc_len, std::string("/cloudcity.DoorManager/").size());
  EXPECT_EQ(m.b.h_exact, ExactHash(path, m.k));
  EXPECT_EQ(m.t.size, 5u + path.size() + 32u);
  // be = dynamic index 62: the entry just inserted
  ASSERT_EQ(m.Parse("be"), 0);
  EXPECT_EQ(m.b.path_how, GW_PATH_IDX_DYN);
  EXPECT_TRUE(m.b.path_valid);
  EXPECT_EQ(m.b.h_exact, ExactHash(path, m.k));
  // deny rewrite of the index: one byte, static :path /index.html
  __u32 off;
  __u8 val;
  gw_buf src{nullptr, 0};
  EXPECT_EQ(gw_hp_deny_rewrite(&m.b, &src, &off, &val), 0);
  EXPECT_EQ(off, 0u);
  EXPECT_EQ(val, 0x85);
  // an index past the table is a protocol error
  EXPECT_EQ(m.Parse("bf"), -1);
  EXPECT_EQ(m.b.err, GW_REASON_PROTOCOL);
}

// What the deny rewrite makes of a :path, and what a walker behind another
// one takes for that one's rewrite. A canonical literal, raw or Huffman,
// gets '-' for its '/' (not '%': a server that percent-decodes would route
// "%2F..."); the result is marked unroutable, and a walker behind (another
// host's grpcwall, or the server side here) writes nothing more. A literal
// that is not canonical otherwise is never rewritten (the rest of it is the
// client's: "-x/../" normalises away), the connection fails; nor is it
// taken for a rewrite.
// An empty literal has no first byte; a block with no :path has nothing
// to make unroutable.
TEST(HpackModel, DenyRewriteAndUnroutablePaths) {
  __u32 off = 0;
  __u8 val = 0;
  {
    Model m;
    auto bytes = Hex("449658941ed90864fa5ef9cf6681d4398b63188a9d23a4bf");  // '-cloudcity.DoorManager/GetName'
    ASSERT_EQ(gw_hp_parse_block(&m.b, &m.t, &m.sp, bytes.data(), static_cast<__u32>(bytes.size()), &m.k), 0);
    EXPECT_EQ(m.b.path_how, GW_PATH_LIT_HUFF);
    EXPECT_FALSE(m.b.path_valid);
    gw_buf src{bytes.data(), static_cast<__u32>(bytes.size())};
    EXPECT_EQ(gw_hp_path_unroutable(&m.b), 1);  // a walker in front made it
    EXPECT_EQ(gw_hp_deny_rewrite(&m.b, &src, &off, &val), 1);   // nothing to write: no route
  }
  {
    Model m;
    auto bytes = Hex("449660941ed90864fa5ef9cf6681d4398b63188a9d23a4bf");  // '/cloudcity.DoorManager/GetName'
    ASSERT_EQ(gw_hp_parse_block(&m.b, &m.t, &m.sp, bytes.data(), static_cast<__u32>(bytes.size()), &m.k), 0);
    gw_buf src{bytes.data(), static_cast<__u32>(bytes.size())};
    EXPECT_EQ(gw_hp_path_unroutable(&m.b), 0);
    ASSERT_EQ(gw_hp_deny_rewrite(&m.b, &src, &off, &val), 0);
    EXPECT_EQ(off, 2u);
    bytes[off] = val;  // the walker's rewrite: now it reads as '-...'
    Model again;
    ASSERT_EQ(gw_hp_parse_block(&again.b, &again.t, &again.sp, bytes.data(), static_cast<__u32>(bytes.size()),
                                &again.k), 0);
    EXPECT_EQ(std::string(again.b.path, again.b.path_len), "-cloudcity.DoorManager/GetName");
    EXPECT_EQ(again.t.size, m.t.size);  // the same entry size: both tables in step
    EXPECT_EQ(gw_hp_path_unroutable(&again.b), 1);
  }
  // not canonical, raw: '%2F...' (percent-decodes to a method), '-x/../'
  // and '/x/../' (dot segments), '-' then a third '/'
  for (std::string p : {"%2Fcloudcity.DoorManager/SetAccessCode", "-x/../cloudcity.DoorManager/SetAccessCode",
                        "/x/../cloudcity.DoorManager/SetAccessCode", "-cloudcity.DoorManager/Set/AccessCode",
                        "-cloudcity.DoorManager/", "-/cloudcity.DoorManager"}) {
    std::vector<unsigned char> bytes = {0x83, 0x86, 0x04, static_cast<unsigned char>(p.size())};
    bytes.insert(bytes.end(), p.begin(), p.end());
    Model m;
    ASSERT_EQ(gw_hp_parse_block(&m.b, &m.t, &m.sp, bytes.data(), static_cast<__u32>(bytes.size()), &m.k), 0) << p;
    EXPECT_EQ(m.b.path_how, GW_PATH_LIT_RAW);
    gw_buf src{bytes.data(), static_cast<__u32>(bytes.size())};
    EXPECT_EQ(gw_hp_path_unroutable(&m.b), 0) << p;
    EXPECT_EQ(gw_hp_deny_rewrite(&m.b, &src, &off, &val), -1) << p;
  }
  {
    Model m;  // '%cloudcity.DoorManager/GetName', Huffman: not canonical either
    auto bytes = Hex("449654941ed90864fa5ef9cf6681d4398b63188a9d23a4bf");
    ASSERT_EQ(gw_hp_parse_block(&m.b, &m.t, &m.sp, bytes.data(), static_cast<__u32>(bytes.size()), &m.k), 0);
    gw_buf src{bytes.data(), static_cast<__u32>(bytes.size())};
    EXPECT_EQ(gw_hp_path_unroutable(&m.b), 0);
    EXPECT_EQ(gw_hp_deny_rewrite(&m.b, &src, &off, &val), -1);
  }
  {
    Model m;
    auto bytes = Hex("448082");  // :path "" (Huffman, no bytes), then :method GET
    ASSERT_EQ(gw_hp_parse_block(&m.b, &m.t, &m.sp, bytes.data(), static_cast<__u32>(bytes.size()), &m.k), 0);
    EXPECT_EQ(m.b.path_how, GW_PATH_LIT_HUFF);
    gw_buf src{bytes.data(), static_cast<__u32>(bytes.size())};
    EXPECT_EQ(gw_hp_deny_rewrite(&m.b, &src, &off, &val), -1);
    EXPECT_EQ(gw_hp_path_unroutable(&m.b), 0);
  }
  {
    Model m;
    auto bytes = Hex("8386");  // POST, http: no :path at all
    ASSERT_EQ(gw_hp_parse_block(&m.b, &m.t, &m.sp, bytes.data(), static_cast<__u32>(bytes.size()), &m.k), 0);
    EXPECT_EQ(m.b.npath, 0);
    gw_buf src{bytes.data(), static_cast<__u32>(bytes.size())};
    EXPECT_EQ(gw_hp_deny_rewrite(&m.b, &src, &off, &val), -1);
    EXPECT_EQ(gw_hp_path_unroutable(&m.b), 0);
  }
}

// A field named ":path" in another case is a :path here: a server that reads
// names in any case would route it. Alone it is decided and rewritten like
// ":path"; beside a ":path" it makes two (the connection fails).
TEST(HpackModel, PathNameInAnyCase) {
  const std::string deny = "/cloudcity.DoorManager/SetAccessCode", allow = "/cloudcity.DoorManager/GetName";
  auto field = [](const std::string& name, const std::string& value) {
    std::vector<unsigned char> f = {0x00, static_cast<unsigned char>(name.size())};
    f.insert(f.end(), name.begin(), name.end());
    f.push_back(static_cast<unsigned char>(value.size()));
    f.insert(f.end(), value.begin(), value.end());
    return f;
  };
  auto request = [&](const std::string& name) {  // POST, http, name: deny
    std::vector<unsigned char> b = {0x83, 0x86}, f = field(name, deny);
    b.insert(b.end(), f.begin(), f.end());
    return b;
  };
  for (const char* name : {":PATH", ":Path", ":pAtH"}) {
    Model m;
    auto bytes = request(name);
    ASSERT_EQ(gw_hp_parse_block(&m.b, &m.t, &m.sp, bytes.data(), static_cast<__u32>(bytes.size()), &m.k), 0);
    EXPECT_EQ(m.b.npath, 1) << name;
    EXPECT_TRUE(m.b.path_valid);
    EXPECT_EQ(m.b.h_exact, ExactHash(deny, m.k)) << name;
    __u32 off = 0;
    __u8 val = 0;
    gw_buf src{bytes.data(), static_cast<__u32>(bytes.size())};
    ASSERT_EQ(gw_hp_deny_rewrite(&m.b, &src, &off, &val), 0);
    EXPECT_EQ(off, 2u + 2u + 5u + 1u);  // the value's first byte
    EXPECT_EQ(val, '-');
    // beside an allowed :path, either way round: two
    for (int first : {0, 1}) {
      Model two;
      std::vector<unsigned char> b2 = {0x83, 0x86};
      auto a = field(":path", allow), d = field(name, deny);
      if (first) std::swap(a, d);
      b2.insert(b2.end(), a.begin(), a.end());
      b2.insert(b2.end(), d.begin(), d.end());
      ASSERT_EQ(gw_hp_parse_block(&two.b, &two.t, &two.sp, b2.data(), static_cast<__u32>(b2.size()), &two.k), 0);
      EXPECT_EQ(two.b.npath, 2) << name;
      EXPECT_EQ(gw_hp_path_reason(&two.b), GW_REASON_BAD_PATH);
    }
  }
  // not :path in any case: other bytes where its characters are (0x1a for
  // ':' is taken as :path, one compare for all five: no server routes it)
  for (const char* name : {":pat\x08", ";path", ":p@th"}) {
    Model m;
    auto bytes = request(name);
    ASSERT_EQ(gw_hp_parse_block(&m.b, &m.t, &m.sp, bytes.data(), static_cast<__u32>(bytes.size()), &m.k), 0);
    EXPECT_EQ(m.b.npath, 0) << name;
  }
}

TEST(HpackModel, NonCanonicalPathsAreNotValid) {
  for (std::string p : {"cloudcity.DoorManager/GetName", "//GetName", "/a.B/", "/a.B/C/D", "/a.B/C?x=1",
                        "/a B/C", "/a.B/C%2f"}) {
    Model m;
    std::string hex = "04";  // literal without indexing, name :path
    char h[3];
    snprintf(h, sizeof(h), "%02zx", p.size());
    hex += h;
    for (unsigned char c : p) {
      snprintf(h, sizeof(h), "%02x", c);
      hex += h;
    }
    ASSERT_EQ(m.Parse(hex), 0) << p;
    EXPECT_FALSE(m.b.path_valid) << p;
    EXPECT_EQ(m.t.n, 0u);  // without indexing: nothing inserted
  }
}

TEST(HpackModel, SizeUpdatesAndBounds) {
  Model m;
  ASSERT_EQ(m.Parse("400a637573746f6d2d6b65790c637573746f6d2d76616c7565"), 0);  // 54 bytes
  EXPECT_EQ(m.t.size, 54u);
  ASSERT_EQ(m.Parse("20"), 0);  // size update to 0 empties the table
  EXPECT_EQ(m.t.n, 0u);
  EXPECT_EQ(m.t.max_size, 0u);
  ASSERT_EQ(m.Parse("3fe11f"), 0);  // back to 4096
  EXPECT_EQ(m.t.max_size, 4096u);
  EXPECT_EQ(m.Parse("8220"), -1);  // a size update after a field: error (RFC 7541 4.2)
  Model big;
  EXPECT_EQ(big.Parse("3fe1ff07"), -1);  // 2^17 > GW_HP_MAX_TABLE
  EXPECT_EQ(big.b.err, GW_REASON_TABLE);
  Model huff;
  EXPECT_EQ(huff.Parse("0481ff"), -1);  // Huffman padding longer than 7 bits / EOS
  // A name longer than GW_HPN_MAXLEN goes into the table (sizes stay in
  // step) but its length is not kept: a later field naming it by index fails.
  Model lng;
  std::string name(300, 'x'), hex = "407f";  // new name, raw, length 127 + 173
  hex += "ad01";
  for (size_t i = 0; i < name.size(); i++) hex += "78";
  hex += "0176";                             // value "v"
  ASSERT_EQ(lng.Parse(hex), 0);
  EXPECT_EQ(lng.t.size, 300u + 1u + 32u);
  EXPECT_EQ(lng.Parse("7e0176"), -1);  // literal, name: dynamic index 62 (the long name)
  EXPECT_EQ(lng.b.err, GW_REASON_TABLE);
  Model shrt;  // ... while a name of GW_HPN_MAXLEN bytes is followed
  char len2[3];
  std::snprintf(len2, sizeof(len2), "%02x", GW_HPN_MAXLEN - 127);
  hex = std::string("407f") + len2;  // new name, raw, length 127 + the rest
  for (int i = 0; i < GW_HPN_MAXLEN; i++) hex += "79";
  hex += "0176";
  ASSERT_EQ(shrt.Parse(hex), 0);
  ASSERT_EQ(shrt.Parse("7e0177"), 0);
  EXPECT_EQ(shrt.t.size, 2u * (GW_HPN_MAXLEN + 1u + 32u));
}

// A literal :path larger than the table empties it and is not entered: the
// next entry takes its number and must not be taken for a :path.
TEST(HpackModel, APathLargerThanTheTableLeavesNoRecordForTheNextEntry) {
  Model m;
  // size update to 50; :path of 5 + 17 + 32 = 54 bytes; then x: y (34 bytes)
  ASSERT_EQ(m.Parse("3f13" + LitPath("/a.B/CCCCCCCCCCCC") + "4001780179"), 0);
  EXPECT_EQ(m.t.n, 1u);
  EXPECT_EQ(m.t.size, 34u);
  ASSERT_EQ(m.Parse("be"), 0);  // dynamic 62: x: y
  EXPECT_EQ(m.b.npath, 0);
  EXPECT_FALSE(gw_hp_path_regranted(&m.b));
}

// 256 :path fields fit in a block; the count saturates ("more than one"):
// wrapped, it would read as none (the block taken for trailers, passed
// undecided) or, at 257, as one (decided on the last :path).
TEST(HpackModel, ManyPathFieldsNeverCountAsNoneOrOne) {
  for (int n : {2, 255, 256, 257, 511, 512, 513}) {
    Model m;
    std::string hex;
    for (int i = 0; i < n; i++) hex += "84";  // static 4, ":path /"
    ASSERT_EQ(m.Parse(hex), 0) << n;
    EXPECT_EQ(m.b.npath, 2) << n;
    EXPECT_EQ(gw_hp_path_reason(&m.b), GW_REASON_BAD_PATH) << n;
  }
}

// Entry numbers are 32 bits and wrap. A :path entry the model did not record
// (the first of two :path fields in a block, as trailers may carry) whose
// number equals that of a recorded entry 2^32 entries ago must never be
// decided on that old record's hashes.
TEST(HpackModel, EntryNumbersWrapWithoutTakingAnOldRecord) {
  Model m;
  const std::string allowed = "/pkg.Allowed/Get", denied = "/pkg.Denied/Drop";
  m.t.ins = 0x12345678u;  // entry X
  ASSERT_EQ(m.Parse(LitPath(allowed)), 0);
  ASSERT_TRUE(m.b.path_valid);
  const __u64 h_allowed = m.b.h_exact;
  ASSERT_EQ(m.Parse("20"), 0);    // emptied (size 0) ...
  ASSERT_EQ(m.Parse("3fe11f"), 0);  // ... and back to 4096
  m.t.ins = 0x12345678u;           // 2^32 entries later: X again
  ASSERT_EQ(m.Parse(LitPath(denied) + "84"), 0);  // the literal goes in at X, unrecorded
  EXPECT_EQ(m.b.npath, 2);
  ASSERT_EQ(m.Parse("be"), 0);    // dynamic 62: entry X, the denied path
  EXPECT_EQ(m.b.path_how, GW_PATH_IDX_DYN);
  EXPECT_NE(m.b.h_exact, h_allowed);
  EXPECT_FALSE(m.b.path_valid);
  EXPECT_EQ(gw_hp_path_reason(&m.b), GW_REASON_BAD_PATH);
}

// A denied literal :path that went into the table was rewritten in place: the
// server's entry holds the rewritten path. A later reference to it is known
// for that (an allow there must not pass: the server would not see the
// method), also once its record moved to the spill; other entries are not.
TEST(HpackModel, RewrittenEntriesAreKnownWhenReferredTo) {
  Model m;
  ASSERT_EQ(m.Parse(LitPath("/pkg.Svc/Denied")), 0);
  gw_hp_mark_rewritten(&m.b, &m.t, &m.sp);
  ASSERT_EQ(m.Parse(LitPath("/pkg.Svc/Other")), 0);
  ASSERT_EQ(m.Parse("bf"), 0);  // dynamic 63: the denied one
  EXPECT_TRUE(gw_hp_path_regranted(&m.b));
  ASSERT_EQ(m.Parse("be"), 0);  // 62: the other
  EXPECT_FALSE(gw_hp_path_regranted(&m.b));
  for (int i = 0; i < GW_HP_PATHS; i++) ASSERT_EQ(m.Parse(LitPath("/pkg.Svc/M" + std::to_string(i))), 0);
  ASSERT_TRUE(gw_hp_spill_used(&m.t, &m.sp));  // the first records moved to the spill
  char idx[8];
  std::snprintf(idx, sizeof(idx), "%02x", 0x80 | (62 + GW_HP_PATHS + 1));
  ASSERT_EQ(m.Parse(idx), 0);
  EXPECT_TRUE(gw_hp_path_regranted(&m.b));
}

// A HEADERS frame with PADDED and PRIORITY flags: the walker finds the block
// between the priority fields and the padding, and the model decides it.
TEST(H2Walker, PaddedAndPriorityHeaders) {
  std::string path = "/cloudcity.DoorManager/GetName";
  std::vector<unsigned char> block = {0x83, 0x86, 0x44, static_cast<unsigned char>(path.size())};
  block.insert(block.end(), path.begin(), path.end());
  const unsigned pad = 6;
  std::vector<unsigned char> payload = {static_cast<unsigned char>(pad), 0x80, 0, 0, 0, 0x10};  // pad len, E|dep, weight
  payload.insert(payload.end(), block.begin(), block.end());
  payload.insert(payload.end(), pad, 0);
  std::vector<unsigned char> frame = {0, 0, static_cast<unsigned char>(payload.size()), H2_FRAME_HEADERS,
                                      H2_FLAG_END_HEADERS | H2_FLAG_PADDED | H2_FLAG_PRIORITY, 0, 0, 0, 1};
  frame.insert(frame.end(), payload.begin(), payload.end());
  gw_h2 h{};
  gw_h2_init(&h);
  h.stage = GW_H2_FRAMES;
  gw_buf src{frame.data(), static_cast<__u32>(frame.size())};
  gw_h2_frame f{};
  __u32 n = 0;
  EXPECT_EQ(gw_h2_next(&h, &src, src.len - 1, &f, &n), GW_ACT_NEED);  // one byte short: wait
  ASSERT_EQ(gw_h2_next(&h, &src, src.len, &f, &n), GW_ACT_BLOCK);
  EXPECT_EQ(n, frame.size());
  EXPECT_EQ(f.blk_off, 9u + 1u + 5u);
  EXPECT_EQ(f.blk_len, block.size());
  EXPECT_TRUE(f.is_request);
  gw_hp_keys k{1, 2};
  gw_hp_block b{};
  gw_hp_spill sp{};
  ASSERT_EQ(gw_hp_parse_block(&b, &h.table, &sp, frame.data() + f.blk_off, f.blk_len, &k), 0);
  EXPECT_EQ(std::string(b.path, b.path_len), path);
  EXPECT_TRUE(b.path_valid);
  // padding longer than the frame is a protocol error
  frame[9] = 200;
  gw_h2 bad{};
  gw_h2_init(&bad);
  bad.stage = GW_H2_FRAMES;
  EXPECT_EQ(gw_h2_next(&bad, &src, src.len, &f, &n), GW_ACT_FAIL);
  EXPECT_EQ(bad.reason, GW_REASON_PROTOCOL);
}

TEST(H2Walker, DataSkippedContinuationAndOversizeDiverted) {
  gw_h2 h{};
  gw_h2_init(&h);
  h.stage = GW_H2_FRAMES;
  gw_h2_frame f{};
  __u32 n = 0;
  std::vector<unsigned char> data = {0x01, 0x00, 0x00, H2_FRAME_DATA, 0, 0, 0, 0, 1};  // 64 KiB DATA: only the header is there
  gw_buf src{data.data(), static_cast<__u32>(data.size())};
  ASSERT_EQ(gw_h2_next(&h, &src, src.len, &f, &n), GW_ACT_PASS);
  EXPECT_EQ(n, 9u + 65536u);  // skipped whole, payload never read
  std::vector<unsigned char> hdr = {0x00, 0x00, 0x05, H2_FRAME_HEADERS, 0 /* no END_HEADERS */, 0, 0, 0, 1};
  gw_buf s2{hdr.data(), static_cast<__u32>(hdr.size())};
  ASSERT_EQ(gw_h2_next(&h, &s2, s2.len, &f, &n), GW_ACT_DIVERT);  // to the fallback
  EXPECT_EQ(h.reason, GW_REASON_CONTINUATION);
  gw_h2 h2{};
  gw_h2_init(&h2);
  h2.stage = GW_H2_FRAMES;
  std::vector<unsigned char> big = {0x00, 0x40, 0x01, H2_FRAME_HEADERS, H2_FLAG_END_HEADERS, 0, 0, 0, 1};
  gw_buf s3{big.data(), static_cast<__u32>(big.size())};
  ASSERT_EQ(gw_h2_next(&h2, &s3, s3.len, &f, &n), GW_ACT_DIVERT);
  EXPECT_EQ(h2.reason, GW_REASON_BOUND);
}
