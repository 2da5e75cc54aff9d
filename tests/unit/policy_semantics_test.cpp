// What a policy means, end to end through the compiler: the compiled method
// tables, looked up the way the datapath looks them up (most specific key
// first), must give the verdict the README's semantics give, computed here
// straight from the rules by a reference model that shares no code with
// the compiler. And a dry-run (audit) rule never changes what passes.
// Also: what the YAML reader refuses, one spelling per cgroup and
// destination, and the capacity of one generation.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "error.h"
#include "policy.h"

using namespace gw;

namespace {

constexpr uint64_t kK0 = 0x1234, kK1 = 0x5678;

std::string ErrorOf(const std::string& text, const std::string& root = "", const Capacity& cap = Capacity()) {
  try {
    ParsePolicy(text, "p.yaml", root, cap);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), kBadInput);
    return e.what();
  }
  return "no error";
}

// The datapath's lookup (bpf gw_decide, the helper's Decide): exact, then
// the service wildcard, then `*`, then the pair's default; the first key
// found decides. Pairs with no table: denied.
uint8_t Datapath(const CompiledPolicy& cp, uint16_t ident, uint16_t service, const std::string& path) {
  const CompiledPair* pair = nullptr;
  for (const auto& p : cp.pairs)
    if (p.ident == ident && p.service == service) pair = &p;
  if (!pair) return GW_VERDICT_DENY;
  std::map<uint64_t, uint8_t> table;
  for (const auto& m : PairMethods(cp, *pair)) table[m.hash] = m.val.verdict;
  const std::string svc = path.substr(0, path.find('/', 1) + 1);
  auto exact = table.find(MethodHash(path, GW_MATCH_EXACT, kK0, kK1));
  if (exact != table.end()) return exact->second;
  for (uint64_t h : {MethodHash(svc, GW_MATCH_SERVICE, kK0, kK1), MethodHash("", GW_MATCH_ANY, kK0, kK1),
                     MethodHash("", GW_MATCH_DEFAULT, kK0, kK1)}) {
    auto it = table.find(h);
    if (it == table.end()) continue;
    if (it->second == GW_VERDICT_DENY) return it->second;
    // as gw_decide: a deny entry the path is in another case (the path as
    // written: the hash folds it, as the kernel's does)
    for (uint64_t f : {FoldKey(path, GW_MATCH_EXACT_FOLD, kK0, kK1), FoldKey(svc, GW_MATCH_SERVICE_FOLD, kK0, kK1)}) {
      auto fit = table.find(f);
      if (fit != table.end()) return fit->second;
    }
    return it->second;
  }
  return GW_VERDICT_DENY;
}

std::string Lower(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return s;
}

bool Matches(const std::string& pattern, const std::string& path) {
  if (pattern == "*") return true;
  if (pattern.size() >= 2 && pattern.compare(pattern.size() - 2, 2, "/*") == 0)
    return path.compare(0, pattern.size() - 1, pattern, 0, pattern.size() - 1) == 0 &&
           path.find('/', pattern.size() - 1) == std::string::npos;
  return pattern == path;
}

// The README, read literally: denied unless an enforcing rule of the pair
// allows it and no enforcing deny matches; an audit rule's deny entries
// report (AUDIT) what would otherwise pass; audit rules grant nothing.
// And an enforcing deny entry matches a path in any ASCII case (a server
// may route names ignoring case); an audit rule's, as written.
uint8_t Reference(const Policy& p, const std::string& from, const std::string& to, const std::string& path) {
  bool allow = false, deny = false, audit = false;
  for (const auto& r : p.rules) {
    if (r.from != from || r.to != to) continue;
    for (const auto& e : r.deny) {
      if (r.audit && Matches(e.pattern, path)) audit = true;
      if (!r.audit && Matches(Lower(e.pattern), Lower(path))) deny = true;
    }
    if (!r.audit)
      for (const auto& e : r.allow)
        if (Matches(e.pattern, path)) allow = true;
  }
  if (deny || !allow) return GW_VERDICT_DENY;
  return audit ? GW_VERDICT_AUDIT : GW_VERDICT_ALLOW;
}

bool Passes(uint8_t v) { return v == GW_VERDICT_ALLOW || v == GW_VERDICT_AUDIT; }

struct Gen {
  std::mt19937_64 rng;
  explicit Gen(uint64_t seed) : rng(seed) {}
  size_t Pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); }

  // (with twins in another case: a deny entry matches those too)
  const std::vector<std::string> svcs{"/a.S/", "/a.T/", "/b.S/", "/a.s/"};
  const std::vector<std::string> methods{"M", "N", "O", "m"};

  std::string Entry() {
    size_t r = Pick(10);
    if (r == 0) return "*";
    const std::string& s = svcs[Pick(svcs.size())];
    if (r <= 3) return s + "*";
    return s + methods[Pick(methods.size())];
  }
  std::vector<std::string> Paths() {
    std::vector<std::string> out;
    for (const auto& s : svcs)
      for (const auto& m : methods) out.push_back(s + m);
    out.push_back("/c.U/M");  // matched by `*` only
    return out;
  }
  // YAML text of a random policy: 2 identities x 2 services, 1-6 rules
  std::string Policy(bool with_audit) {
    std::string y =
        "identities:\n  i1: { cgroup: g/one }\n  i2: { cgroup: g/two }\n"
        "services:\n  s1: { port: 1 }\n  s2: { port: 2 }\nrules:\n";
    size_t n = 1 + Pick(6);
    for (size_t i = 0; i < n; i++) {
      bool audit = with_audit && Pick(3) == 0;
      std::string rule = "  - from: i" + std::to_string(1 + Pick(2)) + "\n    to: s" + std::to_string(1 + Pick(2)) + "\n";
      std::string allow, deny;
      for (size_t k = Pick(4); k > 0; k--) allow += (allow.empty() ? "" : ", ") + std::string("\"") + Entry() + "\"";
      for (size_t k = Pick(3); k > 0; k--) deny += (deny.empty() ? "" : ", ") + std::string("\"") + Entry() + "\"";
      if (allow.empty() && deny.empty()) allow = "\"" + Entry() + "\"";
      if (!allow.empty()) rule += "    allow: [" + allow + "]\n";
      if (!deny.empty()) rule += "    deny: [" + deny + "]\n";
      if (audit) rule += "    audit: true\n";
      y += rule;
    }
    return y;
  }
};

}  // namespace

// The example: public-terminal may call GetName only; an audit rule
// denying SetAccessCode and Admin/* must not let either through.
TEST(PolicySemantics, AuditDenyNeverGrants) {
  const std::string base =
      "identities:\n  public-terminal: { cgroup: cloudcity/terminal }\n"
      "services:\n  door-manager: { port: 50051 }\nrules:\n"
      "  - from: public-terminal\n    to: door-manager\n    allow: [/cloudcity.DoorManager/GetName]\n";
  const std::string audit =
      "  - from: public-terminal\n    to: door-manager\n    audit: true\n"
      "    deny: [/cloudcity.DoorManager/SetAccessCode, \"/cloudcity.Admin/*\"]\n";
  for (const std::string& text : {base, base + audit}) {
    Policy p = ParsePolicy(text, "p.yaml");
    CompiledPolicy cp = Compile(p, kK0, kK1);
    EXPECT_EQ(Datapath(cp, 1, 1, "/cloudcity.DoorManager/GetName"), GW_VERDICT_ALLOW);
    EXPECT_EQ(Datapath(cp, 1, 1, "/cloudcity.DoorManager/SetAccessCode"), GW_VERDICT_DENY) << text;
    EXPECT_EQ(Datapath(cp, 1, 1, "/cloudcity.Admin/Reset"), GW_VERDICT_DENY) << text;
  }
  // where an enforcing rule allows, the audit deny reports and lets it pass
  Policy p = ParsePolicy(base + "  - from: public-terminal\n    to: door-manager\n    allow: [\"*\"]\n" + audit, "p.yaml");
  CompiledPolicy cp = Compile(p, kK0, kK1);
  EXPECT_EQ(Datapath(cp, 1, 1, "/cloudcity.DoorManager/SetAccessCode"), GW_VERDICT_AUDIT);
  EXPECT_EQ(Datapath(cp, 1, 1, "/cloudcity.Admin/Reset"), GW_VERDICT_AUDIT);
  EXPECT_EQ(Datapath(cp, 1, 1, "/cloudcity.DoorManager/GetName"), GW_VERDICT_ALLOW);
  // an audit rule's allow entries grant nothing
  Policy q = ParsePolicy(base + "  - from: public-terminal\n    to: door-manager\n    audit: true\n    allow: [\"*\"]\n",
                         "p.yaml");
  EXPECT_EQ(Datapath(Compile(q, kK0, kK1), 1, 1, "/cloudcity.Admin/Reset"), GW_VERDICT_DENY);
  ASSERT_EQ(q.warnings.size(), 1u);
  EXPECT_NE(q.warnings[0].find("p.yaml:12: warning: allow entries of an audit rule change nothing"), std::string::npos)
      << q.warnings[0];
}

// A more specific allow under a general deny, and the reverse: the most
// specific key must still carry the deny of the general entry.
TEST(PolicySemantics, GeneralDenyReachesSpecificKeys) {
  Policy p = ParsePolicy(
      "identities:\n  a: { cgroup: x }\nservices:\n  s: { port: 1 }\nrules:\n"
      "  - from: a\n    to: s\n    allow: [/p.S/M, \"/p.T/*\"]\n    deny: [\"/p.S/*\"]\n"
      "  - from: a\n    to: s\n    deny: [/p.T/N]\n",
      "p.yaml");
  CompiledPolicy cp = Compile(p, kK0, kK1);
  EXPECT_EQ(Datapath(cp, 1, 1, "/p.S/M"), GW_VERDICT_DENY);
  EXPECT_EQ(Datapath(cp, 1, 1, "/p.T/M"), GW_VERDICT_ALLOW);
  EXPECT_EQ(Datapath(cp, 1, 1, "/p.T/N"), GW_VERDICT_DENY);
  EXPECT_EQ(Datapath(cp, 1, 1, "/p.U/N"), GW_VERDICT_DENY);
}

// 10,000 random policies: the compiled tables decide every path of every
// pair as the reference model does.
TEST(PolicySemantics, RandomPoliciesMatchTheReference) {
  Gen g(20261205);
  const auto paths = g.Paths();
  int checked = 0;
  for (int i = 0; i < 10000; i++) {
    std::string text = g.Policy(true);
    Policy p = ParsePolicy(text, "p.yaml");
    CompiledPolicy cp = Compile(p, kK0, kK1);
    for (uint16_t id = 1; id <= 2; id++)
      for (uint16_t sv = 1; sv <= 2; sv++)
        for (const auto& path : paths) {
          uint8_t want = Reference(p, "i" + std::to_string(id), "s" + std::to_string(sv), path);
          uint8_t got = Datapath(cp, id, sv, path);
          ASSERT_EQ(int(got), int(want)) << "path " << path << " from i" << id << " to s" << sv << " in\n" << text;
          checked++;
        }
  }
  EXPECT_EQ(checked, 10000 * 4 * static_cast<int>(paths.size()));
}

// 5,000 random policies with audit rules: what passes is exactly what
// passes once every audit rule is taken out.
TEST(PolicySemantics, AuditRulesChangeNothingThatPasses) {
  Gen g(7);
  const auto paths = g.Paths();
  int audited = 0;
  for (int i = 0; i < 5000; i++) {
    std::string text = g.Policy(true);
    Policy with = ParsePolicy(text, "p.yaml");
    Policy without = with;
    without.rules.clear();
    for (const auto& r : with.rules)
      if (!r.audit) without.rules.push_back(r);
    CompiledPolicy a = Compile(with, kK0, kK1), b = Compile(without, kK0, kK1);
    for (uint16_t id = 1; id <= 2; id++)
      for (uint16_t sv = 1; sv <= 2; sv++)
        for (const auto& path : paths) {
          uint8_t va = Datapath(a, id, sv, path), vb = Datapath(b, id, sv, path);
          ASSERT_EQ(Passes(va), Passes(vb)) << "path " << path << " from i" << id << " to s" << sv << " in\n" << text;
          audited += va == GW_VERDICT_AUDIT;
        }
  }
  EXPECT_GT(audited, 100);  // the generator does reach audit verdicts
}

// A YAML alias gives rules one shared list, and the compiler compiles the
// tables of pairs whose rules share their lists once: 2,000 random policies
// of aliased lists compile to exactly the tables (keys, verdicts, rule ids)
// of the same policies with every list written out.
TEST(PolicySemantics, AliasedListsCompileAsWrittenOut) {
  Gen g(42);
  size_t shared = 0;
  for (int i = 0; i < 2000; i++) {
    std::vector<std::string> lists(3);
    for (auto& l : lists)
      for (size_t k = 1 + g.Pick(4); k > 0; k--) l += (l.empty() ? "" : ", ") + std::string("\"") + g.Entry() + "\"";
    std::string head = "identities:\n  i1: { cgroup: g/one }\n  i2: { cgroup: g/two }\n  i3: { cgroup: g/three }\n"
                       "services:\n  s1: { port: 1 }\n  s2: { port: 2 }\nrules:\n";
    std::string aliased = head, written = head;
    std::set<size_t> anchored;
    auto list = [&](size_t j, std::string* a, std::string* w) {
      *w += "[" + lists[j] + "]";
      if (anchored.insert(j).second) {
        *a += "&l" + std::to_string(j) + " [" + lists[j] + "]";
      } else {
        *a += "*l" + std::to_string(j);
        shared++;
      }
    };
    for (size_t n = 2 + g.Pick(9); n > 0; n--) {
      std::string rule = "  - { from: i" + std::to_string(1 + g.Pick(3)) + ", to: s" + std::to_string(1 + g.Pick(2));
      std::string a = rule, w = rule;
      size_t allow = g.Pick(4), deny = g.Pick(5);  // 3, 4: none
      if (allow == 3 && deny >= 3) allow = g.Pick(3);
      if (allow < 3) {
        a += ", allow: ";
        w += ", allow: ";
        list(allow, &a, &w);
      }
      if (deny < 3) {
        a += ", deny: ";
        w += ", deny: ";
        list(deny, &a, &w);
      }
      const std::string audit = g.Pick(4) == 0 ? ", audit: true }\n" : " }\n";
      aliased += a + audit;
      written += w + audit;
    }
    const Policy pa = ParsePolicy(aliased, "p.yaml"), pw = ParsePolicy(written, "p.yaml");  // the patterns' home
    CompiledPolicy ca = Compile(pa, kK0, kK1), cw = Compile(pw, kK0, kK1);
    // the rule a table entry names is one of its pair's, of the verdict's
    // kind (audit or enforcing), with an entry that covers the key
    for (const auto& pair : ca.pairs)
      for (const auto& m : PairMethods(ca, pair)) {
        if (m.val.kind == GW_MATCH_DEFAULT || m.val.rule == 0) continue;
        ASSERT_LE(m.val.rule, pa.rules.size());
        const Rule& r = pa.rules[m.val.rule - 1];
        ASSERT_EQ(r.from, "i" + std::to_string(pair.ident)) << m.pattern << " rule " << m.val.rule << " in\n" << aliased;
        ASSERT_EQ(r.to, "s" + std::to_string(pair.service)) << m.pattern << " rule " << m.val.rule << " in\n" << aliased;
        ASSERT_EQ(r.audit, m.val.verdict == GW_VERDICT_AUDIT) << m.pattern << " in\n" << aliased;
        const std::string key(m.pattern);
        bool covers = false;
        // (an enforcing deny entry covers its key in any case)
        for (const auto* l : {&r.allow, &r.deny})
          for (const auto& e : *l) {
            const bool fold = l == &r.deny && !r.audit;
            const std::string k = fold ? Lower(key) : key, pat = fold ? Lower(e.pattern) : e.pattern;
            covers = covers || pat == k || pat == "*" ||
                     (pat.back() == '*' && k.compare(0, pat.size() - 1, pat, 0, pat.size() - 1) == 0);
          }
        ASSERT_TRUE(covers) << m.pattern << " rule " << m.val.rule << " in\n" << aliased;
      }
    ASSERT_EQ(ca.pairs.size(), cw.pairs.size()) << aliased;
    for (size_t k = 0; k < ca.pairs.size(); k++) {
      const CompiledPair &pa = ca.pairs[k], &pw = cw.pairs[k];
      ASSERT_EQ(std::make_pair(pa.ident, pa.service), std::make_pair(pw.ident, pw.service)) << aliased;
      const auto pam = PairMethods(ca, pa), pwm = PairMethods(cw, pw);
      ASSERT_EQ(pam.size(), pwm.size()) << aliased;
      for (size_t m = 0; m < pam.size(); m++) {
        const CompiledMethod &ma = pam[m], &mw = pwm[m];
        ASSERT_EQ(ma.hash, mw.hash) << aliased;
        ASSERT_EQ(ma.pattern, mw.pattern) << aliased;
        ASSERT_EQ(std::make_tuple(ma.val.verdict, ma.val.kind, ma.val.rule, ma.val.format),
                  std::make_tuple(mw.val.verdict, mw.val.kind, mw.val.rule, mw.val.format))
            << ma.pattern << " from i" << pa.ident << " to s" << pa.service << " in\n" << aliased;
      }
    }
  }
  EXPECT_GT(shared, 5000u);  // the generator does alias
}

TEST(PolicyYaml, DuplicatesAndSecondDocumentsAreErrors) {
  const std::string ids = "identities:\n  a: { cgroup: x }\n";
  const std::string svcs = "services:\n  s: { port: 1 }\n";
  const std::string rule = "rules:\n  - from: a\n    to: s\n    allow: [/p.S/M]\n";
  EXPECT_EQ(ErrorOf(ids + svcs + rule + "rules:\n  - from: a\n    to: s\n    allow: ['*']\n"),
            "p.yaml:9: duplicate key 'rules' (first at line 5): YAML would keep one of them silently, so say it once");
  EXPECT_EQ(ErrorOf(ids + svcs + rule + "    deny: [/p.S/N]\n    deny: [/p.S/O]\n"),
            "p.yaml:10: duplicate key 'deny' (first at line 9): YAML would keep one of them silently, so say it once");
  EXPECT_EQ(ErrorOf(ids + "services:\n  s: { port: 1, port: 2 }\n"),
            "p.yaml:4: duplicate key 'port' (first at line 4): YAML would keep one of them silently, so say it once");
  EXPECT_EQ(ErrorOf("identities:\n  a: { cgroup: x, cgroup: y }\n"),
            "p.yaml:2: duplicate key 'cgroup' (first at line 2): YAML would keep one of them silently, so say it once");
  EXPECT_EQ(ErrorOf(ids + svcs + rule + "    audit: true\n    audit: false\n"),
            "p.yaml:10: duplicate key 'audit' (first at line 9): YAML would keep one of them silently, so say it once");
  EXPECT_EQ(ErrorOf("identities:\n  a: { cgroup: x }\n  a: { cgroup: y }\n"),
            "p.yaml:3: duplicate key 'a' (first at line 2): YAML would keep one of them silently, so say it once");
  EXPECT_EQ(ErrorOf(ids + svcs + rule + "---\n" + ids),
            "p.yaml:9: a second YAML document ('---'): a policy is one document, put everything in it");
}

TEST(PolicyYaml, AliasesKeysNulAndDepth) {
  // an alias is the anchored value, written out: here one cgroup twice
  EXPECT_EQ(ErrorOf("identities:\n  a: &c { cgroup: x }\n  b: *c\n"),
            "p.yaml:2: identity 'b': cgroup /x is already the cgroup of identity 'a' (p.yaml:2); one cgroup is one "
            "identity");
  Policy p = ParsePolicy(
      "identities:\n  a: { cgroup: x }\n  b: { cgroup: y }\nservices:\n  s: { port: 1 }\nrules:\n"
      "  - { from: a, to: s, allow: &m [/p.S/M, /p.S/N] }\n  - { from: b, to: s, allow: *m }\n",
      "p.yaml");
  ASSERT_EQ(p.rules.size(), 2u);
  ASSERT_EQ(p.rules[1].allow.size(), 2u);
  EXPECT_EQ(p.rules[1].allow[1].pattern, "/p.S/N");
  EXPECT_EQ(ErrorOf("identities:\n  ? [a]\n  : { cgroup: x }\n"), "p.yaml:2: a mapping key must be a plain string");
  EXPECT_EQ(ErrorOf("identities:\n  \"a\": { cgroup: x }\n"),
            "p.yaml:2: a mapping key must be a plain string ('a' is quoted)");
  EXPECT_EQ(ErrorOf("identities:\n  ~: { cgroup: x }\n"), "p.yaml:2: a mapping key must be a plain string");
  EXPECT_EQ(ErrorOf("identities:\n  a: { cgroup: \"x\\0y\" }\n"), "p.yaml:2: a string holds a NUL byte");
  std::string deep = "rules: ";
  for (int i = 0; i < 40; i++) deep += "[";
  EXPECT_EQ(ErrorOf(deep), "p.yaml:1: nesting deeper than 32 levels");

  // an alias bomb (10^40 nodes) stops at the alias that crosses the budget,
  // before it is copied, at once
  std::string bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 40; i++) {
    bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; k++) bomb += (k ? ", *a" : "*a") + std::to_string(i - 1);
    bomb += "]\n";
  }
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(ErrorOf(bomb), "p.yaml:6: the document expands (aliases included) to more than 2000000 nodes: write it "
                           "with fewer aliases");
  // nested anchors: each anchored value is a copy kept for its aliases, and counts
  std::string nested = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 5; i++) {
    nested += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; k++) nested += (k ? ", *a" : "*a") + std::to_string(i - 1);
    nested += "]\n";
  }
  nested += "b: ";
  for (int i = 0; i < 29; i++) nested += "&b" + std::to_string(i) + " [";
  nested += "*a4" + std::string(29, ']') + "\n";  // 29 anchored copies of 111,111 nodes
  EXPECT_NE(ErrorOf(nested).find("the document expands (aliases included) to more than"), std::string::npos);
  // strings count in bytes: a 1 MB string aliased 100 times is 100 MB
  std::string big = "s: &s \"" + std::string(1 << 20, 'x') + "\"\na1: &a1 [*s, *s, *s, *s, *s, *s, *s, *s, *s, *s]\n"
                    "a2: [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\n";
  EXPECT_EQ(ErrorOf(big), "p.yaml:3: the document expands (aliases included) to more than 64 MiB of strings: write it "
                          "with fewer aliases");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

TEST(PolicySpelling, OneCgroupOneIdentity) {
  const std::string root = "/sys/fs/cgroup/unified";
  const std::vector<std::string> spellings = {"cloudcity/terminal", "/cloudcity/terminal", "cloudcity//terminal",
                                              "./cloudcity/terminal", "cloudcity/terminal/",
                                              "/sys/fs/cgroup/unified/cloudcity/terminal"};
  for (const auto& a : spellings) {
    Policy p = ParsePolicy("identities:\n  t: { cgroup: \"" + a + "\" }\n", "p.yaml", root);
    EXPECT_EQ(p.identities[0].cgroup, "/cloudcity/terminal") << a;
    EXPECT_EQ(p.identities[0].components, (std::vector<std::string>{"cloudcity", "terminal"}));
    for (const auto& b : spellings)
      EXPECT_EQ(ErrorOf("identities:\n  t: { cgroup: \"" + a + "\" }\n  u: { cgroup: \"" + b + "\" }\n", root),
                "p.yaml:3: identity 'u': cgroup /cloudcity/terminal is already the cgroup of identity 't' (p.yaml:2); "
                "one cgroup is one identity");
  }
  EXPECT_EQ(ErrorOf("identities:\n  t: { cgroup: / }\n", root),
            "p.yaml:2: identity 't': cgroup / is the cgroup v2 root: every process is in it, and grpcwall cannot "
            "police it; name a cgroup below it");
  EXPECT_EQ(ErrorOf("identities:\n  t: { cgroup: /sys/fs/cgroup/unified }\n", root).substr(0, 64),
            "p.yaml:2: identity 't': cgroup /sys/fs/cgroup/unified is the cgr");
  EXPECT_EQ(ErrorOf("identities:\n  t: { cgroup: a/../b }\n", root),
            "p.yaml:2: identity 't': cgroup path a/../b holds '..': write it from the cgroup v2 root");
  std::string deep;
  for (int i = 0; i < 17; i++) deep += "/d";
  EXPECT_EQ(ErrorOf("identities:\n  t: { cgroup: " + deep + " }\n", root),
            "p.yaml:2: identity 't': cgroup " + deep + " is 17 levels deep; identities can be at most 16 levels "
            "below the cgroup v2 root");
}

TEST(PolicySpelling, OneDestinationOneService) {
  auto dup = [](const std::string& a, const std::string& b) {
    return ErrorOf("services:\n  s: { port: 1, cidrs: [\"" + a + "\"] }\n  t: { port: 1, cidrs: [\"" + b + "\"] }\n");
  };
  const std::string msg = "p.yaml:3: service 't': port 1 to ";
  EXPECT_EQ(dup("10.0.0.1", "10.0.0.1/32"), msg + "10.0.0.1/32 is already a destination of service 's' (p.yaml:2)");
  EXPECT_EQ(dup("::ffff:10.0.0.1", "10.0.0.1/32"), msg + "10.0.0.1/32 is already a destination of service 's' (p.yaml:2)");
  EXPECT_EQ(dup("fd00:0::1/128", "fd00::1"), msg + "fd00::1/128 is already a destination of service 's' (p.yaml:2)");
  EXPECT_EQ(dup("10.0.0.0/8", "10.0.0.0/08"),
            "p.yaml:3: bad CIDR '10.0.0.0/08': prefix length must be 0-32 with no leading zero");
  // within one service too
  EXPECT_EQ(ErrorOf("services:\n  s:\n    port: 1\n    cidrs:\n      - 10.0.0.1\n      - 10.0.0.1/32\n"),
            "p.yaml:6: service 's': port 1 to 10.0.0.1/32 is already a destination of service 's' (p.yaml:5)");
  // any (::/0) and 0.0.0.0/0 (::ffff:0:0/96) are different prefixes: the longest wins
  Policy p = ParsePolicy("services:\n  s: { port: 1 }\n  t: { port: 1, cidrs: [0.0.0.0/0] }\n", "p.yaml");
  EXPECT_EQ(p.services[1].cidrs[0].text, "0.0.0.0/0");
  EXPECT_EQ(ErrorOf("services:\n  s: { port: 1 }\n  t: { port: 1 }\n"),
            "p.yaml:3: service 't': port 1 to any is already a destination of service 's' (p.yaml:2)");
  EXPECT_EQ(ErrorOf("services:\n  s: { port: 01 }\n"), "p.yaml:2: bad port '01': must be 1-65535");
}

TEST(PolicyCapacity, EachLimitWithItsLine) {
  Capacity cap;
  cap.identities = 2;
  cap.services = 2;
  cap.destinations = 3;
  cap.rules = 2;
  cap.pairs = 1;
  cap.names = 8;
  EXPECT_EQ(ErrorOf("identities:\n  a: { cgroup: a }\n  b: { cgroup: b }\n  c: { cgroup: c }\n", "", cap),
            "p.yaml:4: too many identities: a policy holds at most 2");
  EXPECT_EQ(ErrorOf("services:\n  a: { port: 1 }\n  b: { port: 2 }\n  c: { port: 3 }\n", "", cap),
            "p.yaml:4: too many services: a policy holds at most 2");
  EXPECT_EQ(ErrorOf("services:\n  a: { port: 1, cidrs: [10.0.0.1, 10.0.0.2] }\n  b: { port: 2, cidrs: [10.0.0.1, 10.0.0.2] }\n",
                    "", cap),
            "p.yaml:3: too many service destinations: a policy holds at most 3 (port, cidr) pairs, a service "
            "without cidrs counting one");
  const std::string two = "identities:\n  a: { cgroup: a }\n  b: { cgroup: b }\nservices:\n  s: { port: 1 }\nrules:\n";
  EXPECT_EQ(ErrorOf(two + "  - { from: a, to: s, allow: ['*'] }\n  - { from: a, to: s, allow: ['*'] }\n"
                          "  - { from: a, to: s, allow: ['*'] }\n", "", cap),
            "p.yaml:9: too many rules: a policy holds at most 2");
  EXPECT_EQ(ErrorOf(two + "  - { from: a, to: s, allow: ['*'] }\n  - { from: b, to: s, allow: ['*'] }\n", "", cap),
            "p.yaml:8: too many (identity, service) pairs with rules: a policy holds at most 1");
  // names: 2 identities + 1 service + 1 rule + default = 5; the 4th distinct entry is the 9th name
  EXPECT_EQ(ErrorOf(two + "  - from: a\n    to: s\n    allow:\n      - /p.S/A\n      - /p.S/B\n      - /p.S/A\n"
                          "      - /p.S/C\n      - /p.S/D\n", "", cap),
            "p.yaml:14: too many names (identities, services, rules and distinct method entries; an enforcing "
            "deny entry counts twice): a policy holds at most 8");
  // an enforcing deny entry is two (as written, and in any case): the 2nd
  // deny entry is the 9th name; an audit rule's deny entries are one each
  EXPECT_EQ(ErrorOf(two + "  - from: a\n    to: s\n    allow: ['*']\n    deny:\n      - /p.S/A\n      - /p.S/B\n", "",
                    cap),
            "p.yaml:12: too many names (identities, services, rules and distinct method entries; an enforcing "
            "deny entry counts twice): a policy holds at most 8");
  EXPECT_EQ(ErrorOf(two + "  - from: a\n    to: s\n    audit: true\n    deny:\n      - /p.S/A\n      - /p.S/B\n", "",
                    cap),
            "no error");

  // the real limits: half of each map the two slots share
  Capacity real;
  EXPECT_EQ(real.identities, 16383u);
  EXPECT_EQ(real.services, 1023u);
  EXPECT_EQ(real.destinations, 4096u);
  EXPECT_EQ(real.rules, 32767u);
  EXPECT_EQ(real.names, 131070u);
  std::string many = "identities:\n";
  for (int i = 0; i < 16384; i++) many += "  i" + std::to_string(i) + ": { cgroup: c/" + std::to_string(i) + " }\n";
  EXPECT_EQ(ErrorOf(many), "p.yaml:16385: too many identities: a policy holds at most 16383");
}

TEST(PolicyEntries, WildcardThatCannotMatchIsRefused) {
  // "/S/*" matches paths of at least len("/S/") + 1 bytes; past 255 none
  const std::string svc = "/" + std::string(252, 's') + "/";
  EXPECT_EQ(CheckEntry(svc + "*"), "");                   // 255 bytes: "/sss.../x" is 255
  EXPECT_NE(CheckEntry("/" + std::string(253, 's') + "/*"), "");  // 256: can never match
}
