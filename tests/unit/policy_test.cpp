// Policy language and compiler: parsing, errors with lines, wildcards,
// deny-over-allow, audit, and the keyed method hash.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <set>
#include <optional>

#include "descriptors.h"
#include "error.h"
#include "policy.h"

using namespace gw;

namespace {

const char* kGood = R"(identities:
  public-terminal: { cgroup: cloudcity/terminal }
  door-sensor:     { cgroup: /cloudcity/sensor }
services:
  door-manager: { port: 50051, cidrs: [10.250.0.2/32, 10.250.1.0/24] }
  other:        { port: 8080 }
  v6:           { port: 443, cidrs: ["fd00:250::/32", 10.250.0.9] }
rules:
  - from: public-terminal
    to: door-manager
    allow:
      - /cloudcity.DoorManager/GetName
      - /cloudcity.DoorManager/GetLocation
  - from: door-sensor
    to: door-manager
    allow: ["/cloudcity.DoorManager/*"]
    deny: [/cloudcity.DoorManager/SetAccessCode]
  - from: door-sensor
    to: other
    allow: ["*"]
    audit: true
)";

// Returns the message of the InputError that parsing `text` throws.
std::string ErrorOf(const std::string& text) {
  try {
    ParsePolicy(text, "p.yaml");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), kBadInput);
    return e.what();
  }
  return "no error";
}

std::optional<CompiledMethod> Find(const CompiledPolicy& cp, const CompiledPair& p, const std::string& pattern) {
  for (const auto& m : PairMethods(cp, p))
    if (m.pattern == pattern) return m;
  return std::nullopt;
}

}  // namespace

TEST(PolicyParse, GoodPolicy) {
  Policy p = ParsePolicy(kGood, "p.yaml");
  ASSERT_EQ(p.identities.size(), 2u);
  EXPECT_EQ(p.identities[0].name, "public-terminal");
  EXPECT_EQ(p.identities[0].cgroup, "/cloudcity/terminal");  // one spelling
  EXPECT_EQ(p.identities[0].written, "cloudcity/terminal");
  EXPECT_EQ(p.identities[0].line, 2);
  ASSERT_EQ(p.services.size(), 3u);
  EXPECT_EQ(p.services[0].port, 50051);
  ASSERT_EQ(p.services[0].cidrs.size(), 2u);
  EXPECT_EQ(p.services[0].cidrs[1].len, 96 + 24);  // v4-mapped
  const uint8_t want[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 250, 1, 0};
  EXPECT_EQ(std::memcmp(p.services[0].cidrs[1].addr, want, 16), 0);
  EXPECT_TRUE(p.services[1].cidrs.empty());
  ASSERT_EQ(p.services[2].cidrs.size(), 2u);  // IPv6 prefixes, and an IPv4 one with no length
  EXPECT_FALSE(p.services[2].cidrs[0].v4);
  EXPECT_EQ(p.services[2].cidrs[0].len, 32);
  const uint8_t v6[16] = {0xfd, 0x00, 0x02, 0x50};
  EXPECT_EQ(std::memcmp(p.services[2].cidrs[0].addr, v6, 16), 0);
  EXPECT_EQ(p.services[2].cidrs[1].len, 128);
  ASSERT_EQ(p.rules.size(), 3u);
  EXPECT_EQ(p.rules[0].line, 9);
  EXPECT_EQ(p.rules[1].deny[0].line, 17);
  EXPECT_TRUE(p.rules[2].audit);
}

TEST(PolicyParse, ErrorsCarryFileAndLine) {
  EXPECT_EQ(ErrorOf("identities:\n  a: { cgroup: x }\nservices:\n  s: { port: 1 }\nrules:\n"
                    "  - from: a\n    to: s\n    allow: [GetName]\n"),
            "p.yaml:8: bad allow entry 'GetName': must start with '/' (/package.Service/Method, /package.Service/* or *), "
            "or be a preset: health, reflection");
  EXPECT_EQ(ErrorOf("identities:\n  a: { cgroup: x }\nservices:\n  s: { port: 1 }\nrules:\n"
                    "  - from: a\n    to: s\n    allow:\n      - /a.B/C\n      - /a.B/C*\n"),
            "p.yaml:10: bad allow entry '/a.B/C*': '*' only stands alone: /package.Service/* or *");
  EXPECT_EQ(ErrorOf("identities:\n  a: { cgroup: x }\nservices:\n  s: { port: 1 }\nrules:\n"
                    "  - from: b\n    to: s\n    allow: ['*']\n"),
            "p.yaml:6: unknown identity 'b' (define it under identities)");
  EXPECT_EQ(ErrorOf("identities:\n  a: { cgroup: x }\nservices:\n  s: { port: 70000 }\n"),
            "p.yaml:4: bad port '70000': must be 1-65535");
  EXPECT_EQ(ErrorOf("services:\n  s: { port: 1, cidrs: [10.0.0.1/16] }\n"),
            "p.yaml:2: bad CIDR '10.0.0.1/16': host bits set beyond /16");
  EXPECT_EQ(ErrorOf("services:\n  s: { port: 1, cidrs: [\"fd00:250::1/32\"] }\n"),
            "p.yaml:2: bad CIDR 'fd00:250::1/32': host bits set beyond /32");
  EXPECT_EQ(ErrorOf("services:\n  s: { port: 1, cidrs: [\"fd00::/129\"] }\n"),
            "p.yaml:2: bad CIDR 'fd00::/129': prefix length must be 0-128 with no leading zero");
  EXPECT_EQ(ErrorOf("services:\n  s: { port: 1, cidrs: [10.0.0.0/08] }\n"),
            "p.yaml:2: bad CIDR '10.0.0.0/08': prefix length must be 0-32 with no leading zero");
  EXPECT_EQ(ErrorOf("services:\n  s: { port: 1, cidrs: [door-manager] }\n"),
            "p.yaml:2: bad CIDR 'door-manager': expected an IPv4 or IPv6 address with a prefix length, like "
            "10.250.0.2/32 or fd00:250::2/128");
  EXPECT_EQ(ErrorOf("identities:\n  a: { cgroup: x }\n  b: { cgroup: x/ }\n"),
            "p.yaml:3: identity 'b': cgroup /x is already the cgroup of identity 'a' (p.yaml:2); one cgroup is one "
            "identity");
  EXPECT_EQ(ErrorOf("identity:\n  a: { cgroup: x }\n"),
            "p.yaml:1: unknown key 'identity' in policy (expected: identities, rules, services)");
  EXPECT_EQ(ErrorOf("rules:\n  - from: a\n   to: b\n"), "p.yaml:3: YAML syntax error: end of sequence not found");
  EXPECT_EQ(ErrorOf("identities:\n  a: { cgroup: x }\nservices:\n  s: { port: 1 }\nrules:\n"
                    "  - from: a\n    to: s\n    allow: ['*']\n    audit: maybe\n"),
            "p.yaml:9: audit must be true or false, not 'maybe'");
  EXPECT_EQ(ErrorOf(""), "p.yaml:1: policy is empty (expected identities, services and rules)");
}

TEST(PolicyEntries, Forms) {
  EXPECT_EQ(CheckEntry("/cloudcity.DoorManager/GetName"), "");
  EXPECT_EQ(CheckEntry("/cloudcity.DoorManager/*"), "");
  EXPECT_EQ(CheckEntry("*"), "");
  EXPECT_NE(CheckEntry("cloudcity.DoorManager/GetName"), "");  // no leading slash: the grpc-go bypass
  EXPECT_NE(CheckEntry("/cloudcity.DoorManager/"), "");
  EXPECT_NE(CheckEntry("//GetName"), "");
  EXPECT_NE(CheckEntry("/a/b/c"), "");
  EXPECT_NE(CheckEntry("/a.B/Get?x=1"), "");
  EXPECT_NE(CheckEntry("/a.B/" + std::string(300, 'x')), "");
  EXPECT_EQ(KeyOf("/a.B/*").kind, GW_MATCH_SERVICE);
  EXPECT_EQ(KeyOf("/a.B/*").hashed, "/a.B/");
  EXPECT_EQ(KeyOf("*").kind, GW_MATCH_ANY);
  EXPECT_EQ(KeyOf("/a.B/C").kind, GW_MATCH_EXACT);
}

// `health` and `reflection` stand for the services any gRPC server may
// expose, at the line they were written on; the compiled pair has them.
TEST(PolicyEntries, PresetsExpand) {
  Policy p = ParsePolicy("identities:\n  a: { cgroup: x }\nservices:\n  s: { port: 1 }\nrules:\n"
                         "  - from: a\n    to: s\n    allow: [health, /a.B/C, reflection]\n",
                         "p.yaml");
  ASSERT_EQ(p.rules.size(), 1u);
  std::vector<std::string> got;
  for (const auto& e : p.rules[0].allow) {
    got.push_back(e.pattern + (e.preset.empty() ? "" : " <" + e.preset + ">"));
    EXPECT_EQ(e.line, 8);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"/grpc.health.v1.Health/* <health>", "/a.B/C",
                                           "/grpc.reflection.v1alpha.ServerReflection/* <reflection>",
                                           "/grpc.reflection.v1.ServerReflection/* <reflection>"}));
  CompiledPolicy cp = Compile(p, 1, 2);
  ASSERT_EQ(cp.pairs.size(), 1u);
  for (const char* m : {"/grpc.health.v1.Health/*", "/grpc.reflection.v1.ServerReflection/*"}) {
    auto f = Find(cp, cp.pairs[0], m);
    ASSERT_TRUE(f.has_value()) << m;
    EXPECT_EQ(f->val.verdict, GW_VERDICT_ALLOW);
  }
  EXPECT_NE(ErrorOf("identities:\n  a: { cgroup: x }\nservices:\n  s: { port: 1 }\nrules:\n"
                    "  - from: a\n    to: s\n    allow: [healthz]\n"),
            "no error");
  for (const auto& [word, patterns] : Presets())
    for (const auto& pat : patterns) EXPECT_EQ(CheckEntry(pat), "") << word << " " << pat;
}

TEST(PolicyHash, KeyedAndKindSeparated) {
  const std::string path = "/cloudcity.DoorManager/GetName";
  uint64_t h = MethodHash(path, GW_MATCH_EXACT, 1, 2);
  EXPECT_EQ(h, MethodHash(path, GW_MATCH_EXACT, 1, 2));
  EXPECT_NE(h, MethodHash(path, GW_MATCH_EXACT, 1, 3));    // per-attach key changes every hash
  EXPECT_NE(h, MethodHash(path, GW_MATCH_SERVICE, 1, 2));  // kinds never collide
  EXPECT_NE(h, MethodHash(path + "x", GW_MATCH_EXACT, 1, 2));
  EXPECT_NE(MethodHash("", GW_MATCH_ANY, 1, 2), MethodHash("", GW_MATCH_DEFAULT, 1, 2));
}

TEST(PolicyHash, SipHashReferenceVector) {
  // SipHash-2-4 reference (Aumasson & Bernstein, appendix A): key 00..0f,
  // message 00..0e -> a129ca6149be45e5. kind 0 leaves the key unchanged.
  std::string msg;
  for (int i = 0; i < 15; i++) msg.push_back(static_cast<char>(i));
  EXPECT_EQ(MethodHash(msg, GW_MATCH_EXACT, 0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL), 0xa129ca6149be45e5ULL);
}

TEST(PolicyCompile, PairsWildcardsDenyOverAllowAudit) {
  Policy p = ParsePolicy(kGood, "p.yaml");
  CompiledPolicy cp = Compile(p, 7, 9);
  ASSERT_EQ(cp.pairs.size(), 3u);
  const CompiledPair* terminal = nullptr;
  const CompiledPair* sensor = nullptr;
  const CompiledPair* audit = nullptr;
  for (const auto& pr : cp.pairs) {
    if (pr.ident == 1 && pr.service == 1) terminal = &pr;
    if (pr.ident == 2 && pr.service == 1) sensor = &pr;
    if (pr.ident == 2 && pr.service == 2) audit = &pr;
  }
  ASSERT_TRUE(terminal && sensor && audit);

  const auto get = Find(cp, *terminal, "/cloudcity.DoorManager/GetName");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->val.verdict, GW_VERDICT_ALLOW);
  EXPECT_EQ(get->val.rule, 1);
  EXPECT_EQ(get->hash, MethodHash("/cloudcity.DoorManager/GetName", GW_MATCH_EXACT, 7, 9));
  const auto def = Find(cp, *terminal, "*default*");
  ASSERT_TRUE(def);
  EXPECT_EQ(def->val.verdict, GW_VERDICT_DENY);
  EXPECT_EQ(def->hash, MethodHash("", GW_MATCH_DEFAULT, 7, 9));

  const auto svc = Find(cp, *sensor, "/cloudcity.DoorManager/*");
  ASSERT_TRUE(svc);
  EXPECT_EQ(svc->val.kind, GW_MATCH_SERVICE);
  EXPECT_EQ(svc->hash, MethodHash("/cloudcity.DoorManager/", GW_MATCH_SERVICE, 7, 9));
  const auto set = Find(cp, *sensor, "/cloudcity.DoorManager/SetAccessCode");
  ASSERT_TRUE(set);
  EXPECT_EQ(set->val.verdict, GW_VERDICT_DENY);

  // an audit-only pair grants nothing: a dry-run rule never widens
  EXPECT_EQ(Find(cp, *audit, "*default*")->val.verdict, GW_VERDICT_DENY);
  EXPECT_FALSE(Find(cp, *audit, "*"));
  ASSERT_EQ(p.warnings.size(), 2u);  // its allow entries, and the pair that allows nothing
  EXPECT_EQ(p.warnings[0].rfind("p.yaml:20: warning: allow entries of an audit rule change nothing", 0), 0u)
      << p.warnings[0];
  EXPECT_EQ(p.warnings[1].rfind("p.yaml:18: warning: every rule from 'door-sensor' to 'other' audits", 0), 0u)
      << p.warnings[1];
}

// an identity below another's cgroup takes the outer one's processes' way
// up where they may make cgroups below their own: said, with both lines
TEST(PolicyCompile, IdentityBelowAnotherIsWarned) {
  Policy p = ParsePolicy(
      "identities:\n  terminal: { cgroup: cloudcity/terminal }\n  other: { cgroup: cloudcity/terminals }\n"
      "  admin: { cgroup: cloudcity/terminal/x/admin }\n  kiosk: { cidrs: [10.250.1.0/24] }\n"
      "services:\n  s: { port: 1 }\nrules:\n  - { from: admin, to: s, allow: ['*'] }\n",
      "p.yaml");
  ASSERT_EQ(p.warnings.size(), 1u);
  EXPECT_EQ(p.warnings[0].rfind("p.yaml:4: warning: identity 'admin' (cgroup /cloudcity/terminal/x/admin) is below "
                                "the cgroup of identity 'terminal' (p.yaml:2): a process of 'terminal' that may "
                                "make or move into cgroups below its own",
                                0),
            0u)
      << p.warnings[0];
  // siblings, and a name that only starts like another's, are not below it
  Policy q = ParsePolicy(
      "identities:\n  terminal: { cgroup: cloudcity/terminal }\n  other: { cgroup: cloudcity/terminals/a }\n"
      "services:\n  s: { port: 1 }\nrules:\n  - { from: other, to: s, allow: ['*'] }\n",
      "q.yaml");
  EXPECT_TRUE(q.warnings.empty()) << q.warnings[0];
}

// The datapath folds a :path to ASCII lower case 8 bytes at a time with no
// branch (GW_FOLD_WORD): every byte value at every place in a word and in
// the tail hashes as it does lowered one byte at a time, and no other byte
// is changed (a byte and its value with bit 5 flipped hash alike only for
// letters).
TEST(PolicyCompile, FoldKeyIsAsciiLowerCase) {
  const std::string base = "/abcdefghijklmnopq/rs";  // 21 bytes: two words and a tail of five
  for (size_t pos : {0u, 3u, 7u, 8u, 15u, 16u, 20u})
    for (int c = 0; c < 256; c++) {
      std::string s = base, lower = base, flipped = base;
      s[pos] = static_cast<char>(c);
      lower[pos] = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
      flipped[pos] = static_cast<char>(c ^ 0x20);
      EXPECT_EQ(FoldKey(s, GW_MATCH_EXACT_FOLD, 7, 9), FoldKey(lower, GW_MATCH_EXACT_FOLD, 7, 9)) << pos << " " << c;
      const bool letter = (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
      EXPECT_EQ(FoldKey(s, GW_MATCH_EXACT_FOLD, 7, 9) == FoldKey(flipped, GW_MATCH_EXACT_FOLD, 7, 9), letter)
          << pos << " " << c;
    }
  // the other kinds are not folded
  EXPECT_NE(MethodHash("/a.B/C", GW_MATCH_EXACT, 7, 9), MethodHash("/a.b/c", GW_MATCH_EXACT, 7, 9));
}

// An enforcing deny entry holds in any case, over exact allow entries too.
TEST(PolicyCompile, DenyEntriesHoldInAnyCase) {
  Policy p = ParsePolicy(
      "identities:\n  a: { cgroup: x }\nservices:\n  s: { port: 1 }\nrules:\n"
      "  - { from: a, to: s, allow: ['/a.B/*', '*', /a.B/getName], deny: [/a.B/GetName, '/c.D/*'] }\n"
      "  - { from: a, to: s, audit: true, deny: [/a.B/Audited] }\n",
      "p.yaml");
  CompiledPolicy cp = Compile(p, 7, 9);
  std::vector<std::string> folded;
  for (const auto& m : PairMethods(cp, cp.pairs[0]))
    if (m.val.kind == GW_MATCH_EXACT_FOLD || m.val.kind == GW_MATCH_SERVICE_FOLD) {
      EXPECT_EQ(m.val.verdict, GW_VERDICT_DENY);
      EXPECT_EQ(m.val.rule, 1);
      folded.emplace_back(m.pattern);
    }
  std::sort(folded.begin(), folded.end());
  // (an audit rule's deny entries are not: a dry run never denies)
  EXPECT_EQ(folded, (std::vector<std::string>{"/a.B/GetName", "/c.D/*"}));
  // an exact allow entry in another case is denied (on a server that
  // ignores case it is the denied method; one that does not has no other)
  for (const auto& m : PairMethods(cp, cp.pairs[0]))
    if (m.pattern == "/a.B/getName") {
      EXPECT_EQ(m.val.verdict, GW_VERDICT_DENY);
    }
}

TEST(PolicyCompile, DenyWinsAcrossRules) {
  Policy p = ParsePolicy(
      "identities:\n  a: { cgroup: x }\nservices:\n  s: { port: 1 }\nrules:\n"
      "  - from: a\n    to: s\n    allow: [/p.S/M]\n"
      "  - from: a\n    to: s\n    deny: [/p.S/M]\n"
      "  - from: a\n    to: s\n    allow: [/p.S/M]\n",
      "p.yaml");
  CompiledPolicy cp = Compile(p, 1, 1);
  ASSERT_EQ(cp.pairs.size(), 1u);
  const auto m = Find(cp, cp.pairs[0], "/p.S/M");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->val.verdict, GW_VERDICT_DENY);
  EXPECT_EQ(m->val.rule, 2);
}

TEST(PolicyCompile, PairsOfOneShapeShareATableWithTheirOwnRuleIds) {
  // three identities under one aliased list, a fourth with its own deny
  Policy p = ParsePolicy(
      "identities:\n  a: { cgroup: x }\n  b: { cgroup: y }\n  c: { cgroup: z }\n  d: { cgroup: w }\n"
      "services:\n  s: { port: 1 }\nrules:\n"
      "  - { from: a, to: s, allow: &m [/p.S/M, /p.S/N] }\n"
      "  - { from: b, to: s, allow: *m }\n"
      "  - { from: c, to: s, allow: *m }\n"
      "  - { from: d, to: s, allow: *m, deny: [/p.S/N] }\n",
      "p.yaml");
  CompiledPolicy cp = Compile(p, 1, 1);
  ASSERT_EQ(cp.pairs.size(), 4u);
  ASSERT_EQ(cp.tables.size(), 2u);
  for (int i = 0; i < 3; i++) {
    EXPECT_EQ(cp.pairs[i].table, cp.pairs[0].table);
    ASSERT_EQ(cp.pairs[i].rules, std::vector<uint16_t>{static_cast<uint16_t>(i + 1)});
    const auto m = Find(cp, cp.pairs[i], "/p.S/M");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->val.verdict, GW_VERDICT_ALLOW);
    EXPECT_EQ(m->val.rule, i + 1);  // each pair's own rule id, from one table
    EXPECT_EQ(m->val.local, 0);
  }
  EXPECT_NE(cp.pairs[3].table, cp.pairs[0].table);
  EXPECT_EQ(Find(cp, cp.pairs[3], "/p.S/N")->val.verdict, GW_VERDICT_DENY);
  EXPECT_EQ(Find(cp, cp.pairs[3], "/p.S/N")->val.rule, 4);
  // in the table itself: rule numbers local to the pair, marked so
  for (const auto& m : cp.tables[cp.pairs[0].table]) {
    if (!m.val.rule) continue;
    EXPECT_EQ(std::make_pair(m.val.rule, m.val.local), std::make_pair(uint16_t{1}, uint8_t{1}));
  }
}

TEST(PolicyFile, ExampleCompiles) {
  Policy p = LoadPolicyFile(std::string(GW_SOURCE_DIR) + "/policies/cloudcity.yaml");
  EXPECT_EQ(p.identities.size(), 2u);
  EXPECT_EQ(Compile(p, 0, 0).pairs.size(), 2u);
}

// `policy check --descriptor-set`: protoc's own FileDescriptorSet of the
// test service; entries naming what it does not define are warned about at
// their line, `*` and presets are not; what is not a descriptor set is an
// error naming the file.
TEST(PolicyDescriptors, EntriesCheckedAgainstProtoc) {
  const std::string ds = ::testing::TempDir() + "cloudcity.pb";
  const std::string cmd = "protoc -o " + ds + " --include_imports -I " GW_SOURCE_DIR "/tests/grpc " GW_SOURCE_DIR
                          "/tests/grpc/cloudcity.proto";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  Descriptors d = LoadDescriptorSet(ds);
  ASSERT_EQ(d.services.count("cloudcity.DoorManager"), 1u);
  EXPECT_EQ(d.services["cloudcity.DoorManager"],
            (std::set<std::string>{"GetLocation", "GetName", "RequestMaintenance", "SetAccessCode"}));
  Policy p = ParsePolicy(
      "identities:\n  a: { cgroup: x }\nservices:\n  s: { port: 1 }\nrules:\n"
      "  - from: a\n    to: s\n    allow:\n      - /cloudcity.DoorManager/GetName\n      - /cloudcity.DoorManager/GetNmae\n"
      "      - /cloudcity.DoorManger/*\n      - /cloudcity.DoorManager/*\n      - health\n"
      "    deny: [\"*\", /cloudcity.DoorManager/SetAccesCode]\n",
      "p.yaml");
  auto w = CheckAgainst(p, d, "cc.pb");
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].line, 10);
  EXPECT_EQ(w[0].entry, "/cloudcity.DoorManager/GetNmae");
  EXPECT_NE(w[0].message.find("p.yaml:10: warning: '/cloudcity.DoorManager/GetNmae': method GetNmae is not a method "
                              "of cloudcity.DoorManager in cc.pb (it has: GetLocation, GetName"),
            std::string::npos)
      << w[0].message;
  EXPECT_EQ(w[1].line, 11);
  EXPECT_NE(w[1].message.find("service cloudcity.DoorManger is not defined in cc.pb"), std::string::npos);
  EXPECT_EQ(w[2].entry, "/cloudcity.DoorManager/SetAccesCode");
  EXPECT_EQ(w[2].line, 14);
  // not a descriptor set: the file is named, and how to make one
  for (const std::string& bad : {std::string("hello world"), std::string("\x0a\x05\x12", 3), std::string()}) {
    try {
      ParseDescriptorSet(bad, "x.pb");
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), kBadInput);
      EXPECT_EQ(std::string(e.what()).rfind("x.pb: ", 0), 0u) << e.what();
      EXPECT_NE(std::string(e.what()).find("protoc -o FILE --include_imports"), std::string::npos);
    }
  }
}
