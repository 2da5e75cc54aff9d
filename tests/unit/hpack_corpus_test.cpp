// The HPACK model against real data: the recorded client streams (whole,
// split at every offset, one byte per write), the hpack-test-case stories
// of five encoders, and libnghttp2's inflater on generated blocks. The
// model's :path and table size must match a full decoder's every time.
#include <algorithm>
#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <dirent.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "nghttp2_hd.h"
#include "replay.h"

namespace {

const std::string kFixtures = std::string(GW_SOURCE_DIR) + "/tests/fixtures/";

std::vector<unsigned char> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

uint64_t ExactHash(const std::string& s, const gw_hp_keys& k) {
  unsigned char buf[GW_PATH_MAX] = {};
  std::copy(s.begin(), s.begin() + std::min<size_t>(s.size(), GW_PATH_MAX), buf);
  return gw_siphash(buf, static_cast<__u32>(std::min<size_t>(s.size(), GW_PATH_MAX)), k.k0, k.k1, GW_MATCH_EXACT);
}

// What the model resolved as the block's :path, checked against `want`.
::testing::AssertionResult PathIs(const gw_hp_block& b, const gw_hp_keys& k, const std::string& want) {
  switch (b.path_how) {
    case GW_PATH_LIT_RAW:
    case GW_PATH_LIT_HUFF:
      if (want.size() < GW_PATH_MAX && std::string(b.path, b.path_len) == want) return ::testing::AssertionSuccess();
      if (want.size() >= GW_PATH_MAX && b.path_long) return ::testing::AssertionSuccess();
      return ::testing::AssertionFailure() << "literal :path '" << std::string(b.path, b.path_len) << "' != '" << want << "'";
    case GW_PATH_IDX_STATIC:
      if ((b.path_len == 1 && want == "/") || (b.path_len == 11 && want == "/index.html"))
        return ::testing::AssertionSuccess();
      return ::testing::AssertionFailure() << "static :path len " << b.path_len << " != '" << want << "'";
    case GW_PATH_IDX_DYN:
      if (b.h_exact == ExactHash(want, k)) return ::testing::AssertionSuccess();
      return ::testing::AssertionFailure() << "indexed :path hash differs from '" << want << "'";
    default:
      return ::testing::AssertionFailure() << "no :path, want '" << want << "'";
  }
}

const std::vector<std::string> kCalls = {"GetName", "GetName", "SetAccessCode", "GetName", "SetAccessCode", "GetName"};

// Requests the replay decided, as method paths, checked with the inflater.
void ExpectCalls(const Replayer& r, const std::string& what) {
  std::vector<const Decided*> requests;
  for (const auto& d : r.decided)
    if (d.request) requests.push_back(&d);
  ASSERT_EQ(requests.size(), kCalls.size()) << what;
  for (size_t i = 0; i < kCalls.size(); i++) {
    EXPECT_EQ(requests[i]->blk.npath, 1) << what;
    EXPECT_TRUE(requests[i]->blk.path_valid) << what << " call " << i;
    EXPECT_TRUE(PathIs(requests[i]->blk, r.k, "/cloudcity.DoorManager/" + kCalls[i])) << what << " call " << i;
  }
}

class Captures : public ::testing::TestWithParam<std::string> {};

TEST_P(Captures, WholeSplitAndByteByByte) {
  auto bytes = ReadFile(kFixtures + GetParam());
  ASSERT_GT(bytes.size(), 100u);
  Replayer whole;
  whole.Write(bytes.data(), bytes.size());
  ASSERT_FALSE(whole.failed);
  ExpectCalls(whole, "whole");
  EXPECT_EQ(whole.out, bytes);  // nothing lost, nothing reordered

  // the table model is in step with a full decoder after every block
  Inflater inf;
  for (const auto& d : whole.decided) {
    std::vector<std::string> paths;
    ASSERT_TRUE(inf.Inflate(d.frame.data() + d.blk_off, d.blk_len, &paths));
    EXPECT_EQ(d.table_size, inf.TableSize());
  }

  for (size_t cut = 1; cut < bytes.size(); cut++) {
    Replayer r;
    r.Write(bytes.data(), cut);
    r.Write(bytes.data() + cut, bytes.size() - cut);
    ASSERT_FALSE(r.failed) << "split at " << cut;
    ExpectCalls(r, "split at " + std::to_string(cut));
    ASSERT_EQ(r.out, bytes) << "split at " << cut;
  }
  Replayer bytewise;
  for (size_t i = 0; i < bytes.size(); i++) bytewise.Write(&bytes[i], 1);
  ExpectCalls(bytewise, "one byte per write");
  EXPECT_EQ(bytewise.out, bytes);
}

// Denying SetAccessCode in place keeps both tables in step; the server's
// decoder sees '-' where the '/' was, every other call unchanged.
TEST_P(Captures, DenyRewriteKeepsTablesInStep) {
  auto bytes = ReadFile(kFixtures + GetParam());
  Replayer r;
  const uint64_t deny = ExactHash("/cloudcity.DoorManager/SetAccessCode", r.k);
  r.on_block = [&](Decided& d, std::vector<unsigned char>& frame) {
    if (!d.request || d.blk.h_exact != deny) return;
    gw_buf blk{frame.data() + d.blk_off, d.blk_len};
    __u32 off = 0;
    __u8 val = 0;
    ASSERT_EQ(gw_hp_deny_rewrite(&d.blk, &blk, &off, &val), 0);
    frame[d.blk_off + off] = val;
  };
  r.Write(bytes.data(), bytes.size());
  ASSERT_FALSE(r.failed);
  ASSERT_EQ(r.out.size(), bytes.size());

  Replayer server_view;  // walks what the server got
  server_view.Write(r.out.data(), r.out.size());
  Inflater inf;
  std::vector<std::string> got;
  size_t i = 0;
  for (const auto& d : server_view.decided) {
    std::vector<std::string> paths;
    ASSERT_TRUE(inf.Inflate(d.frame.data() + d.blk_off, d.blk_len, &paths));
    EXPECT_EQ(inf.TableSize(), r.decided[i++].table_size);
    if (d.request) got.push_back(paths.at(0));
  }
  ASSERT_EQ(got.size(), kCalls.size());
  for (size_t c = 0; c < kCalls.size(); c++) {
    if (kCalls[c] == "SetAccessCode")
      // a literal's first byte, or an index made the static /index.html
      EXPECT_TRUE(got[c] == "-cloudcity.DoorManager/SetAccessCode" || got[c] == "/index.html")
          << "call " << c << ": " << got[c];
    else
      EXPECT_EQ(got[c], "/cloudcity.DoorManager/" + kCalls[c]) << "call " << c;
  }
}

INSTANTIATE_TEST_SUITE_P(RealClients, Captures,
                         ::testing::Values("grpc-python-1.51.c2s.bin", "grpc-js-1.14.c2s.bin",
                                           "grpc-go-1.33.c2s.bin"),
                         [](const auto& info) {
                           std::string n = info.param.substr(0, info.param.find('.'));
                           for (auto& c : n) if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST(CapturesContinuation, FailsClosedAtTheContinuedBlock) {
  auto bytes = ReadFile(kFixtures + "h2-python-continuation.c2s.bin");
  Replayer r;
  r.Write(bytes.data(), bytes.size());
  EXPECT_TRUE(r.failed);
  EXPECT_EQ(r.h.reason, GW_REASON_CONTINUATION);
  for (const auto& d : r.decided) EXPECT_FALSE(d.request);  // no request got through undecided
}

// Every story of every encoder, case by case, one compression context each.
TEST(HpackStories, EveryPathExactTableInStep) {
  DIR* top = opendir((kFixtures + "hpack-test-case").c_str());
  ASSERT_TRUE(top);
  int stories = 0, cases = 0, paths = 0;
  while (dirent* e = readdir(top)) {
    std::string enc = e->d_name;
    if (enc[0] == '.' || enc == "LICENSE" || enc == "README.md") continue;
    DIR* d = opendir((kFixtures + "hpack-test-case/" + enc).c_str());
    ASSERT_TRUE(d) << enc;
    while (dirent* s = readdir(d)) {
      std::string file = s->d_name;
      if (file.find(".json") == std::string::npos) continue;
      std::ifstream in(kFixtures + "hpack-test-case/" + enc + "/" + file);
      nlohmann::json story = nlohmann::json::parse(in);
      gw_hp_table t{};
      gw_hp_table_init(&t);
      gw_hp_spill sp{};
      gw_hp_block b{};
      gw_hp_keys k{3, 4};
      Inflater inf;
      stories++;
      for (const auto& c : story["cases"]) {
        if (c.contains("header_table_size") && !c["header_table_size"].is_null()) inf.SetMax(c["header_table_size"].get<size_t>());
        std::string hex = c["wire"];
        std::vector<unsigned char> wire;
        for (size_t i = 0; i + 1 < hex.size(); i += 2) wire.push_back(static_cast<unsigned char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
        std::vector<std::string> want;
        for (const auto& h : c["headers"])
          for (const auto& [name, value] : h.items())
            if (name == ":path") want.push_back(value);
        std::string where = enc + "/" + file + " case " + std::to_string(c["seqno"].get<int>());
        ASSERT_EQ(gw_hp_parse_block(&b, &t, &sp, wire.data(), static_cast<__u32>(wire.size()), &k), 0)
            << where << " reason " << int(b.err);
        std::vector<std::string> ngpaths;
        ASSERT_TRUE(inf.Inflate(wire.data(), wire.size(), &ngpaths)) << where;
        ASSERT_EQ(t.size, inf.TableSize()) << where;
        ASSERT_EQ(b.npath, std::min<size_t>(want.size(), 2)) << where;  // (2: more than one)
        if (want.size() == 1) {
          ASSERT_TRUE(PathIs(b, k, want[0])) << where;
          paths++;
        }
        cases++;
      }
    }
    closedir(d);
  }
  closedir(top);
  EXPECT_GT(stories, 100);
  EXPECT_GT(paths, 1000);
  std::cout << "stories " << stories << ", cases " << cases << ", paths " << paths << "\n";
}

// Generated blocks: libnghttp2's deflater writes every representation it
// has (indexed, incremental, without/never indexing, Huffman or raw), with
// table size changes; its inflater is the reference.
TEST(HpackDifferential, NghttpDeflaterVsModel) {
  std::mt19937 rng(42);
  Deflater def;
  Inflater inf;
  gw_hp_table t{};
  gw_hp_table_init(&t);
  gw_hp_spill sp{};
  gw_hp_block b{};
  gw_hp_keys k{5, 6};
  const std::vector<std::string> methods = {"GetName", "GetLocation", "SetAccessCode", "RequestMaintenance", "X"};
  for (int blk = 0; blk < 3000; blk++) {
    if (rng() % 50 == 0) {
      size_t sz = std::vector<size_t>{0, 64, 256, 1024, 4096}[rng() % 5];
      def.ChangeTableSize(sz);
    }
    Headers hs = {
        {":method", "POST"}, {":scheme", "http"}, {":authority", "10.250.0.2:50051"}};
    std::string path = "/pkg" + std::to_string(rng() % 7) + ".Svc/" + methods[rng() % methods.size()];
    if (rng() % 10 == 0) path = "/" + std::string(rng() % 300, 'a');  // long, not canonical
    hs.insert(hs.begin() + rng() % 4, {":path", path});
    int extra = rng() % 6;
    for (int i = 0; i < extra; i++)
      hs.push_back({"x-h" + std::to_string(rng() % 20), std::string(rng() % 80, static_cast<char>('a' + rng() % 26))});
    hs.push_back({"grpc-timeout", std::to_string(rng() % 100000) + "m"});
    std::vector<bool> no_index;
    for (size_t i = 0; i < hs.size(); i++) no_index.push_back(rng() % 5 == 0);
    std::vector<uint8_t> buf = def.Deflate(hs, no_index);
    ssize_t n = ssize_t(buf.size());
    ASSERT_GT(n, 0);
    std::vector<std::string> ngpaths;
    ASSERT_TRUE(inf.Inflate(buf.data(), n, &ngpaths));
    ASSERT_EQ(gw_hp_parse_block(&b, &t, &sp, buf.data(), static_cast<__u32>(n), &k), 0) << "block " << blk << " reason " << int(b.err);
    ASSERT_EQ(t.size, inf.TableSize()) << "block " << blk;
    ASSERT_EQ(b.npath, 1) << "block " << blk;
    ASSERT_TRUE(PathIs(b, k, path)) << "block " << blk;
    ASSERT_EQ(b.path_valid, path.rfind("/pkg", 0) == 0) << "block " << blk;
  }
}

// More live :path entries than the table model's ring (GW_HP_PATHS): a
// client that calls 40 methods on one connection, each :path entered in the
// table (as grpc-go's encoder does), and then the first ones again by index.
// libnghttp2's inflater says what each block's :path is. With the spill
// every path resolves exactly; without one (the kernel could not make it) a
// reference to a pushed-out record is denied (GW_REASON_TABLE), never
// decided on another path's hashes.
std::vector<uint8_t> HpackInt(uint8_t first, int nbits, uint32_t v) {
  std::vector<uint8_t> out;
  const uint32_t max = (1u << nbits) - 1;
  if (v < max) return {static_cast<uint8_t>(first | v)};
  out.push_back(static_cast<uint8_t>(first | max));
  for (v -= max; v >= 128; v >>= 7) out.push_back(static_cast<uint8_t>((v & 0x7f) | 0x80));
  out.push_back(static_cast<uint8_t>(v));
  return out;
}

TEST(HpackModel, PathRecordsBeyondTheRingSpill) {
  for (bool with_spill : {true, false}) {
    Inflater inf;
    gw_hp_table t{};
    gw_hp_table_init(&t);
    gw_hp_spill sp{};
    gw_hp_block b{};
    gw_hp_keys k{7, 8};
    std::vector<std::string> paths, entered;  // entered: newest last
    for (int i = 0; i < 40; i++) paths.push_back("/pkg.Svc" + std::to_string(i % 4) + "/Method" + std::to_string(i));
    int lost = 0, indexed = 0;
    for (int round = 0; round < 3; round++) {
      for (size_t i = 0; i < paths.size(); i++) {
        const std::string& path = paths[round == 0 ? i : (i * 7) % paths.size()];
        std::vector<uint8_t> buf = {0x83, 0x86};  // :method POST, :scheme http
        auto it = std::find(entered.begin(), entered.end(), path);
        if (it == entered.end()) {  // literal with incremental indexing, name :path (static 4), raw
          auto h = HpackInt(0x40, 6, 4);
          buf.insert(buf.end(), h.begin(), h.end());
          h = HpackInt(0x00, 7, static_cast<uint32_t>(path.size()));
          buf.insert(buf.end(), h.begin(), h.end());
          buf.insert(buf.end(), path.begin(), path.end());
          entered.push_back(path);
        } else {  // indexed: dynamic entries start at 62, newest first
          auto h = HpackInt(0x80, 7, static_cast<uint32_t>(62 + (entered.end() - 1 - it)));
          buf.insert(buf.end(), h.begin(), h.end());
        }
        std::vector<std::string> ngpaths;
        ASSERT_TRUE(inf.Inflate(buf.data(), buf.size(), &ngpaths));
        ASSERT_EQ(ngpaths, std::vector<std::string>{path});
        ASSERT_EQ(gw_hp_parse_block(&b, &t, with_spill ? &sp : nullptr, buf.data(), static_cast<__u32>(buf.size()), &k), 0);
        ASSERT_EQ(t.size, inf.TableSize());
        ASSERT_EQ(b.npath, 1);
        if (b.path_how == GW_PATH_IDX_DYN) indexed++;
        if (b.path_lost) {
          ASSERT_FALSE(with_spill) << path;
          ASSERT_EQ(gw_hp_path_reason(&b), GW_REASON_TABLE);
          lost++;
          continue;
        }
        ASSERT_TRUE(PathIs(b, k, path)) << path << " round " << round;
        ASSERT_TRUE(b.path_valid);
      }
    }
    EXPECT_EQ(indexed, 80);
    if (with_spill) {
      EXPECT_TRUE(gw_hp_spill_used(&t, &sp));
    } else {
      EXPECT_EQ(lost, 80 - 2 * GW_HP_PATHS);  // all but the ring's newest records, each round
    }
  }
}

}  // namespace
