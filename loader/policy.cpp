#include "policy.h"

#include <cstring>

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "error.h"

extern "C" {
#include "siphash.h"
}

namespace gw {
namespace {

class Parser {
 public:
  explicit Parser(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void Fail(const YAML::Node& n, const std::string& msg) const {
    Fail(n.Mark().line + 1, msg);
  }
  [[noreturn]] void Fail(int line, const std::string& msg) const {
    throw InputError(file_ + ":" + std::to_string(line) + ": " + msg);
  }

  std::string Scalar(const YAML::Node& n, const std::string& what) const {
    if (!n.IsScalar()) Fail(n, what + " must be a string");
    return n.Scalar();
  }

  void OnlyKeys(const YAML::Node& map, const std::set<std::string>& allowed,
                const std::string& where) const {
    for (const auto& kv : map) {
      std::string k = kv.first.Scalar();
      if (!allowed.count(k)) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        Fail(kv.first, "unknown key '" + k + "' in " + where + " (expected: " + list + ")");
      }
    }
  }

  static bool GoodName(const std::string& s) {
    if (s.empty() || s.size() >= GW_NAME_MAX) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
      return isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
  }

  Cidr ParseCidr(const YAML::Node& n) const {
    std::string s = Scalar(n, "cidr");
    Cidr c;
    c.text = s;
    auto slash = s.find('/');
    std::string ip = s.substr(0, slash);
    in_addr a4{};
    in6_addr a6{};
    if (inet_pton(AF_INET, ip.c_str(), &a4) == 1) {
      c.v4 = true;
    } else if (inet_pton(AF_INET6, ip.c_str(), &a6) != 1) {
      Fail(n, "bad CIDR '" + s + "': expected an IPv4 or IPv6 address with a prefix length, like 10.250.0.2/32 or "
                                 "fd00:250::2/128");
    }
    const int max = c.v4 ? 32 : 128;
    int len = max;
    if (slash != std::string::npos) {
      std::string l = s.substr(slash + 1);
      if (l.empty() || l.size() > 3 || !std::all_of(l.begin(), l.end(), ::isdigit) ||
          (l.size() > 1 && l[0] == '0') || std::stoi(l) > max)
        Fail(n, "bad CIDR '" + s + "': prefix length must be 0-" + std::to_string(max));
      len = std::stoi(l);
    }
    if (c.v4) {  // v4-mapped
      c.addr[10] = c.addr[11] = 0xff;
      std::memcpy(c.addr + 12, &a4, 4);
      len += GW_V4_MAPPED_BITS;
    } else {
      std::memcpy(c.addr, &a6, 16);
    }
    for (int bit = len; bit < 128; bit++)
      if (c.addr[bit / 8] & (0x80 >> (bit % 8)))
        Fail(n, "bad CIDR '" + s + "': host bits set beyond /" + std::to_string(c.v4 ? len - GW_V4_MAPPED_BITS : len));
    c.len = static_cast<uint8_t>(len);
    return c;
  }

  std::vector<Entry> Entries(const YAML::Node& n, const std::string& what) const {
    std::vector<Entry> out;
    if (!n.IsSequence()) Fail(n, what + " must be a list of methods");
    for (const auto& e : n) {
      Entry en{Scalar(e, what + " entry"), e.Mark().line + 1};
      std::string err = CheckEntry(en.pattern);
      if (!err.empty()) Fail(e, "bad " + what + " entry '" + en.pattern + "': " + err);
      out.push_back(en);
    }
    return out;
  }

  Policy Parse(const std::string& text) {
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::ParserException& e) {
      Fail(e.mark.line + 1, "YAML syntax error: " + e.msg);
    }
    Policy p;
    p.file = file_;
    if (root.IsNull()) Fail(1, "policy is empty (expected identities, services and rules)");
    if (!root.IsMap()) Fail(root, "policy must be a mapping with identities, services and rules");
    OnlyKeys(root, {"identities", "services", "rules"}, "policy");

    std::set<std::string> cgroups;
    if (auto ids = root["identities"]) {
      if (!ids.IsMap()) Fail(ids, "identities must be a mapping of name: { cgroup: PATH }");
      for (const auto& kv : ids) {
        Identity id;
        id.name = kv.first.Scalar();
        id.line = kv.first.Mark().line + 1;
        if (!GoodName(id.name)) Fail(kv.first, "bad identity name '" + id.name + "': use letters, digits, '-', '_', '.' (at most 63)");
        if (!kv.second.IsMap()) Fail(kv.second, "identity '" + id.name + "' must be { cgroup: PATH }");
        OnlyKeys(kv.second, {"cgroup"}, "identity '" + id.name + "'");
        if (!kv.second["cgroup"]) Fail(kv.second, "identity '" + id.name + "' needs a cgroup");
        id.cgroup = Scalar(kv.second["cgroup"], "cgroup");
        if (id.cgroup.empty() || id.cgroup.size() >= GW_CGROUP_PATH_MAX)
          Fail(kv.second["cgroup"], "cgroup path must be 1-" + std::to_string(GW_CGROUP_PATH_MAX - 1) + " characters");
        if (id.cgroup.find("..") != std::string::npos)
          Fail(kv.second["cgroup"], "cgroup path must not contain '..'");
        std::string norm = id.cgroup;
        while (norm.size() > 1 && norm.back() == '/') norm.pop_back();
        if (!cgroups.insert(norm).second)
          Fail(kv.second["cgroup"], "cgroup '" + id.cgroup + "' is already the cgroup of another identity");
        for (const auto& other : p.identities)
          if (other.name == id.name) Fail(kv.first, "identity '" + id.name + "' defined twice");
        p.identities.push_back(id);
      }
    }
    if (auto svcs = root["services"]) {
      if (!svcs.IsMap()) Fail(svcs, "services must be a mapping of name: { port: N, cidrs: [...] }");
      std::set<std::string> seen_dest;
      for (const auto& kv : svcs) {
        Service s;
        s.name = kv.first.Scalar();
        s.line = kv.first.Mark().line + 1;
        if (!GoodName(s.name)) Fail(kv.first, "bad service name '" + s.name + "': use letters, digits, '-', '_', '.' (at most 63)");
        if (!kv.second.IsMap()) Fail(kv.second, "service '" + s.name + "' must be { port: N, cidrs: [...] }");
        OnlyKeys(kv.second, {"port", "cidrs"}, "service '" + s.name + "'");
        auto port = kv.second["port"];
        if (!port) Fail(kv.second, "service '" + s.name + "' needs a port");
        std::string ps = Scalar(port, "port");
        if (ps.empty() || ps.size() > 5 || !std::all_of(ps.begin(), ps.end(), ::isdigit) ||
            std::stoi(ps) < 1 || std::stoi(ps) > 65535)
          Fail(port, "bad port '" + ps + "': must be 1-65535");
        s.port = static_cast<uint16_t>(std::stoi(ps));
        if (auto cidrs = kv.second["cidrs"]) {
          if (!cidrs.IsSequence()) Fail(cidrs, "cidrs must be a list like [10.250.0.2/32]");
          for (const auto& c : cidrs) s.cidrs.push_back(ParseCidr(c));
        }
        std::vector<std::string> dests;
        if (s.cidrs.empty()) dests.push_back(std::to_string(s.port) + " any");
        for (const auto& c : s.cidrs) dests.push_back(std::to_string(s.port) + " " + c.text);
        for (const auto& d : dests)
          if (!seen_dest.insert(d).second)
            Fail(kv.first, "service '" + s.name + "': destination " + d + " already belongs to another service");
        for (const auto& other : p.services)
          if (other.name == s.name) Fail(kv.first, "service '" + s.name + "' defined twice");
        p.services.push_back(s);
      }
    }
    if (auto rules = root["rules"]) {
      if (!rules.IsSequence()) Fail(rules, "rules must be a list of { from, to, allow, deny, audit }");
      for (const auto& r : rules) {
        if (!r.IsMap()) Fail(r, "a rule must be a mapping with from, to, allow, deny, audit");
        OnlyKeys(r, {"from", "to", "allow", "deny", "audit"}, "rule");
        Rule rule;
        rule.line = r.Mark().line + 1;
        if (!r["from"]) Fail(r, "rule needs 'from: IDENTITY'");
        if (!r["to"]) Fail(r, "rule needs 'to: SERVICE'");
        rule.from = Scalar(r["from"], "from");
        rule.to = Scalar(r["to"], "to");
        auto has_id = std::any_of(p.identities.begin(), p.identities.end(),
                                  [&](const Identity& i) { return i.name == rule.from; });
        if (!has_id) Fail(r["from"], "unknown identity '" + rule.from + "' (define it under identities)");
        auto has_svc = std::any_of(p.services.begin(), p.services.end(),
                                   [&](const Service& s) { return s.name == rule.to; });
        if (!has_svc) Fail(r["to"], "unknown service '" + rule.to + "' (define it under services)");
        if (r["allow"]) rule.allow = Entries(r["allow"], "allow");
        if (r["deny"]) rule.deny = Entries(r["deny"], "deny");
        if (auto a = r["audit"]) {
          std::string v = Scalar(a, "audit");
          if (v == "true") rule.audit = true;
          else if (v == "false") rule.audit = false;
          else Fail(a, "audit must be true or false, not '" + v + "'");
        }
        if (rule.allow.empty() && rule.deny.empty()) Fail(r, "rule allows and denies nothing (add allow: or deny:)");
        p.rules.push_back(rule);
      }
    }
    if (p.rules.size() >= GW_MAX_RULES) Fail(1, "too many rules (at most " + std::to_string(GW_MAX_RULES - 1) + ")");
    if (p.identities.size() >= GW_MAX_IDENTITIES) Fail(1, "too many identities");
    if (p.services.size() >= GW_MAX_SERVICES) Fail(1, "too many services");
    return p;
  }

 private:
  std::string file_;
};

bool ServiceChar(char c) { return isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_'; }
bool MethodChar(char c) { return isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'; }

}  // namespace

std::string CheckEntry(const std::string& s) {
  if (s == "*") return "";
  if (s.empty() || s[0] != '/') return "must start with '/' (/package.Service/Method, /package.Service/* or *)";
  auto second = s.find('/', 1);
  if (second == std::string::npos) return "expected /package.Service/Method";
  std::string svc = s.substr(1, second - 1), method = s.substr(second + 1);
  if (svc.empty()) return "empty service name";
  if (!std::all_of(svc.begin(), svc.end(), ServiceChar)) return "service name may hold only letters, digits, '.' and '_'";
  if (method.empty()) return "empty method name (use /" + svc + "/* for every method)";
  if (method == "*") return "";
  if (method.find('*') != std::string::npos) return "'*' only stands alone: /package.Service/* or *";
  if (!std::all_of(method.begin(), method.end(), MethodChar)) return "method name may hold only letters, digits, '_', '.' and '-'";
  if (s.size() >= GW_PATH_MAX) return "longer than " + std::to_string(GW_PATH_MAX - 1) + " bytes";
  return "";
}

MatchKey KeyOf(const std::string& p) {
  if (p == "*") return {GW_MATCH_ANY, ""};
  if (p.size() >= 2 && p.compare(p.size() - 2, 2, "/*") == 0)
    return {GW_MATCH_SERVICE, p.substr(0, p.size() - 1)};
  return {GW_MATCH_EXACT, p};
}

uint64_t MethodHash(const std::string& s, gw_match_kind kind, uint64_t k0, uint64_t k1) {
  unsigned char buf[GW_HASH_BUF] = {};
  size_t n = std::min(s.size(), sizeof(buf));
  std::copy_n(s.begin(), n, buf);
  return gw_siphash(buf, static_cast<__u32>(n), k0, k1, kind);
}

int VerdictRank(uint8_t v) {
  switch (v) {
    case GW_VERDICT_DENY: return 3;
    case GW_VERDICT_AUDIT: return 2;
    case GW_VERDICT_ALLOW: return 1;
    default: return 0;
  }
}

const char* VerdictName(uint8_t v) {
  switch (v) {
    case GW_VERDICT_ALLOW: return "allow";
    case GW_VERDICT_DENY: return "deny";
    case GW_VERDICT_AUDIT: return "audit";
    default: return "none";
  }
}

Policy ParsePolicy(const std::string& text, const std::string& file) {
  return Parser(file).Parse(text);
}

Policy LoadPolicyFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot read policy file: " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParsePolicy(ss.str(), path);
}

CompiledPolicy Compile(const Policy& p, uint64_t k0, uint64_t k1) {
  CompiledPolicy out;
  out.identities = p.identities;
  out.services = p.services;
  auto ident_id = [&](const std::string& n) {
    for (size_t i = 0; i < p.identities.size(); i++)
      if (p.identities[i].name == n) return static_cast<uint16_t>(i + 1);
    return uint16_t{0};
  };
  auto service_id = [&](const std::string& n) {
    for (size_t i = 0; i < p.services.size(); i++)
      if (p.services[i].name == n) return static_cast<uint16_t>(i + 1);
    return uint16_t{0};
  };

  // (ident, service) -> method key -> entry; ordered for stable output
  std::map<std::pair<uint16_t, uint16_t>, std::map<uint64_t, CompiledMethod>> tables;
  std::map<std::pair<uint16_t, uint16_t>, std::vector<const CompiledRule*>> pair_rules;
  out.rules.reserve(p.rules.size());
  for (size_t i = 0; i < p.rules.size(); i++) {
    const Rule& r = p.rules[i];
    CompiledRule cr{static_cast<uint16_t>(i + 1), r.from, r.to, r.audit, r.line};
    out.rules.push_back(cr);
  }
  for (size_t i = 0; i < p.rules.size(); i++) {
    const Rule& r = p.rules[i];
    const CompiledRule& cr = out.rules[i];
    auto pk = std::make_pair(ident_id(r.from), service_id(r.to));
    auto& table = tables[pk];
    pair_rules[pk].push_back(&cr);
    auto add = [&](const Entry& e, uint8_t verdict) {
      MatchKey mk = KeyOf(e.pattern);
      CompiledMethod m;
      m.hash = MethodHash(mk.hashed, mk.kind, k0, k1);
      m.pattern = e.pattern;
      m.val.verdict = verdict;
      m.val.kind = static_cast<uint8_t>(mk.kind);
      m.val.rule = cr.id;
      auto it = table.find(m.hash);
      if (it == table.end() || VerdictRank(verdict) > VerdictRank(it->second.val.verdict))
        table[m.hash] = m;
    };
    for (const auto& e : r.allow) add(e, GW_VERDICT_ALLOW);
    for (const auto& e : r.deny) add(e, r.audit ? GW_VERDICT_AUDIT : GW_VERDICT_DENY);
  }
  for (auto& [pk, table] : tables) {
    // What no entry matches: denied, unless every rule of the pair audits.
    const auto& rules = pair_rules[pk];
    bool all_audit = std::all_of(rules.begin(), rules.end(), [](const CompiledRule* r) { return r->audit; });
    CompiledMethod d;
    d.hash = MethodHash("", GW_MATCH_DEFAULT, k0, k1);
    d.pattern = "*default*";
    d.val.verdict = all_audit ? GW_VERDICT_AUDIT : GW_VERDICT_DENY;
    d.val.kind = GW_MATCH_DEFAULT;
    d.val.rule = all_audit ? rules.front()->id : 0;
    table[d.hash] = d;
    CompiledPair cp{pk.first, pk.second, {}};
    for (auto& [h, m] : table) cp.methods.push_back(m);
    out.pairs.push_back(std::move(cp));
  }
  return out;
}

}  // namespace gw
