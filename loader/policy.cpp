#include "policy.h"

#include <cstring>

#include <arpa/inet.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <tuple>
#include <sstream>

#include <linux/types.h>

#include "error.h"
#include "hpack_tables.h"
#include "yaml_doc.h"

extern "C" {
#include "siphash.h"
}

namespace gw {
namespace {

// ASCII lower case (what a deny entry is matched in, besides as written)
std::string Lower(std::string_view s) {
  std::string out(s);
  for (auto& ch : out)
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch + 32);
  return out;
}


class Parser {
 public:
  Parser(std::string file, std::string cgroup_root, const Capacity& cap)
      : file_(std::move(file)), root_(std::move(cgroup_root)), cap_(cap) {}

  [[noreturn]] void Fail(const YamlNode& n, const std::string& msg) const { Fail(n.line, msg); }
  [[noreturn]] void Fail(int line, const std::string& msg) const {
    throw InputError(file_ + ":" + std::to_string(line) + ": " + msg);
  }
  std::string At(int line) const { return file_ + ":" + std::to_string(line); }

  std::string Scalar(const YamlNode& n, const std::string& what) const {
    if (n.kind != YamlNode::kScalar) Fail(n, what + " must be a string");
    return n.text;
  }

  void OnlyKeys(const YamlNode& map, const std::set<std::string>& allowed, const std::string& where) const {
    for (const auto& kv : map.entries()) {
      if (!allowed.count(kv.first.text)) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        Fail(kv.first, "unknown key '" + kv.first.text + "' in " + where + " (expected: " + list + ")");
      }
    }
  }

  static bool GoodName(const std::string& s) {
    if (s.empty() || s.size() >= GW_NAME_MAX) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
      return isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
  }

  Cidr ParseCidr(const YamlNode& n) const {
    std::string s = Scalar(n, "cidr");
    Cidr c;
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
        Fail(n, "bad CIDR '" + s + "': prefix length must be 0-" + std::to_string(max) + " with no leading zero");
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
    // one spelling: an IPv4 address (also written as ::ffff:a.b.c.d) as IPv4
    const bool mapped = len >= GW_V4_MAPPED_BITS && IN6_IS_ADDR_V4MAPPED(reinterpret_cast<const in6_addr*>(c.addr));
    char buf[INET6_ADDRSTRLEN] = {};
    if (mapped) {
      inet_ntop(AF_INET, c.addr + 12, buf, sizeof(buf));
      c.text = std::string(buf) + "/" + std::to_string(len - GW_V4_MAPPED_BITS);
    } else {
      inet_ntop(AF_INET6, c.addr, buf, sizeof(buf));
      c.text = std::string(buf) + "/" + std::to_string(len);
    }
    return c;
  }

  // An aliased list (the same children as one read before) is the list
  // read then: it was checked, and its entries are shared, not copied.
  EntryList Entries(const YamlNode& n, const std::string& what) {
    if (n.kind != YamlNode::kSequence) Fail(n, what + " must be a list of methods");
    auto seen = lists_.find(n.children.get());
    if (seen != lists_.end()) return seen->second;
    std::vector<Entry> out;
    out.reserve(n.items().size());
    for (const auto& e : n.items()) {
      Entry en{Scalar(e, what + " entry"), e.line, ""};
      bool preset = false;
      for (const auto& [word, patterns] : Presets()) {
        if (en.pattern != word) continue;
        for (const auto& p : patterns) out.push_back(Entry{p, e.line, word});
        preset = true;
      }
      if (preset) continue;
      std::string err = CheckEntry(en.pattern);
      if (!err.empty()) Fail(e, "bad " + what + " entry '" + en.pattern + "': " + err);
      out.push_back(std::move(en));
    }
    EntryList list(std::move(out));
    lists_.emplace(n.children.get(), list);
    return list;
  }

  // What every identity and service entry starts with: a good name, room
  // for one more (`have` so far), and a mapping of only `keys`. (Two
  // entries of one name cannot reach here: the YAML reader refuses
  // duplicate keys.)
  void EntryHead(const YamlNode& key, const YamlNode& val, const std::string& what, const std::string& plural,
                 size_t have, size_t cap, const std::string& form, const std::set<std::string>& keys) const {
    if (!GoodName(key.text))
      Fail(key, "bad " + what + " name '" + key.text + "': use letters, digits, '-', '_', '.' (at most 63)");
    if (have >= cap) Fail(key, "too many " + plural + ": a policy holds at most " + std::to_string(cap));
    if (val.kind != YamlNode::kMap) Fail(val, what + " '" + key.text + "' must be " + form);
    OnlyKeys(val, keys, what + " '" + key.text + "'");
  }

  // A cgroup as a policy names one: canonical components, bounded length.
  std::string CgroupOf(const YamlNode& cg, const std::string& who, std::vector<std::string>* components,
                       std::string* written) const {
    *written = Scalar(cg, "cgroup");
    std::string err = CanonicalCgroup(*written, root_, components);
    if (!err.empty()) Fail(cg, who + ": " + err);
    std::string path;
    for (const auto& c : *components) path += "/" + c;
    if (path.size() >= GW_CGROUP_PATH_MAX)
      Fail(cg, who + ": cgroup path " + path + " is longer than " + std::to_string(GW_CGROUP_PATH_MAX - 1) +
                   " bytes");
    return path;
  }

  void Identities(const YamlNode& ids, Policy* p) const {
    if (ids.kind != YamlNode::kMap)
      Fail(ids, "identities must be a mapping of name: { cgroup: PATH } or { cidrs: [PREFIX, ...] }");
    std::map<std::string, std::pair<std::string, int>> by_cgroup;  // -> (identity, line)
    std::map<std::pair<std::string, uint8_t>, std::pair<std::string, int>> by_prefix;
    for (const auto& [key, val] : ids.entries()) {
      Identity id;
      id.name = key.text;
      id.line = key.line;
      static const std::set<std::string> kIdentityKeys{"cgroup", "cidrs"};
      EntryHead(key, val, "identity", "identities", p->identities.size(), cap_.identities,
                "{ cgroup: PATH } (a local workload) or { cidrs: [PREFIX, ...] } (callers by address)", kIdentityKeys);
      if (const YamlNode* cidrs = val.Get("cidrs")) {
        if (cidrs->kind != YamlNode::kSequence || cidrs->items().empty())
          Fail(*cidrs, "identity '" + id.name + "': cidrs must be a non-empty list like [10.250.1.0/24, "
                       "\"fd00:1::/64\"] (0.0.0.0/0 and ::/0 catch every caller)");
        for (const auto& c : cidrs->items()) {
          Cidr cidr = ParseCidr(c);
          std::string bytes(reinterpret_cast<const char*>(cidr.addr), sizeof(cidr.addr));
          auto [it, fresh] = by_prefix.emplace(std::make_pair(bytes, cidr.len), std::make_pair(id.name, c.line));
          if (!fresh)
            Fail(c, "identity '" + id.name + "': " + cidr.text + " is already a prefix of identity '" +
                        it->second.first + "' (" + At(it->second.second) +
                        "); a caller's longest matching prefix names one identity");
          if (by_prefix.size() > cap_.peer_cidrs)
            Fail(c, "too many identity cidrs: a policy holds at most " + std::to_string(cap_.peer_cidrs));
          id.cidrs.push_back(std::move(cidr));
        }
      }
      const YamlNode* cg = val.Get("cgroup");
      if (!cg && id.cidrs.empty())
        Fail(val, "identity '" + id.name + "' needs a cgroup (a local workload) or cidrs (callers by address)");
      if (!cg) {
        p->identities.push_back(std::move(id));
        continue;
      }
      id.written = Scalar(*cg, "cgroup");
      std::string err = CanonicalCgroup(id.written, root_, &id.components);
      if (!err.empty()) Fail(*cg, "identity '" + id.name + "': " + err);
      for (const auto& c : id.components) id.cgroup += "/" + c;
      if (id.cgroup.size() >= GW_CGROUP_PATH_MAX)
        Fail(*cg, "identity '" + id.name + "': cgroup path " + id.cgroup + " is longer than " +
                      std::to_string(GW_CGROUP_PATH_MAX - 1) + " bytes");
      auto [it, fresh] = by_cgroup.emplace(id.cgroup, std::make_pair(id.name, id.line));
      if (!fresh)
        Fail(*cg, "identity '" + id.name + "': cgroup " + id.cgroup + " is already the cgroup of identity '" +
                      it->second.first + "' (" + At(it->second.second) + "); one cgroup is one identity");
      p->identities.push_back(std::move(id));
    }
    // an identity below another's cgroup: the deepest wins, so a process
    // of the outer one that may make or move into cgroups below its own (a
    // delegated cgroup) takes the inner one's rights
    for (const auto& id : p->identities) {
      std::string prefix;
      const std::pair<std::string, int>* outer = nullptr;
      for (size_t k = 0; k + 1 < id.components.size(); k++) {
        prefix += "/" + id.components[k];
        auto it = by_cgroup.find(prefix);
        if (it != by_cgroup.end()) outer = &it->second;  // (the nearest one)
      }
      if (outer)
        p->warnings.push_back(At(id.line) + ": warning: identity '" + id.name + "' (cgroup " + id.cgroup +
                              ") is below the cgroup of identity '" + outer->first + "' (" + At(outer->second) +
                              "): a process of '" + outer->first + "' that may make or move into cgroups below "
                              "its own (a delegated cgroup: systemd Delegate=, a container's cgroup namespace) "
                              "becomes '" + id.name + "'; keep that cgroup undelegated, or give the two "
                              "identities cgroups outside each other");
    }
  }

  void Services(const YamlNode& svcs, Policy* p) const {
    if (svcs.kind != YamlNode::kMap) Fail(svcs, "services must be a mapping of name: { port: N, cidrs: [...] }");
    // (port, prefix) -> (service, line): one destination, one service
    std::map<std::tuple<uint16_t, std::string, uint8_t>, std::pair<std::string, int>> dests;
    std::map<uint16_t, std::pair<std::string, int>> servers;  // port -> (service with a cgroup, line)
    size_t ndest = 0;
    for (const auto& [key, val] : svcs.entries()) {
      Service s;
      s.name = key.text;
      s.line = key.line;
      EntryHead(key, val, "service", "services", p->services.size(), cap_.services,
                "{ port: N, cidrs: [...], cgroup: PATH }", {"port", "cidrs", "cgroup"});
      const YamlNode* port = val.Get("port");
      if (!port) Fail(val, "service '" + s.name + "' needs a port");
      std::string ps = Scalar(*port, "port");
      if (ps.empty() || ps.size() > 5 || !std::all_of(ps.begin(), ps.end(), ::isdigit) || ps[0] == '0' ||
          std::stoi(ps) > 65535)
        Fail(*port, "bad port '" + ps + "': must be 1-65535");
      s.port = static_cast<uint16_t>(std::stoi(ps));
      std::vector<std::pair<Cidr, int>> prefixes;
      if (const YamlNode* cidrs = val.Get("cidrs")) {
        if (cidrs->kind != YamlNode::kSequence || cidrs->items().empty())
          Fail(*cidrs, "cidrs must be a non-empty list like [10.250.0.2/32] (leave it out for any address)");
        for (const auto& c : cidrs->items()) {
          s.cidrs.push_back(ParseCidr(c));
          prefixes.emplace_back(s.cidrs.back(), c.line);
        }
      } else {
        Cidr any;  // ::/0: IPv4 (v4-mapped) and IPv6
        any.text = "any";
        prefixes.emplace_back(any, s.line);
      }
      for (const auto& [c, line] : prefixes) {
        std::string bytes(reinterpret_cast<const char*>(c.addr), sizeof(c.addr));
        auto [it, fresh] = dests.emplace(std::make_tuple(s.port, bytes, c.len), std::make_pair(s.name, line));
        if (!fresh)
          Fail(line, "service '" + s.name + "': port " + std::to_string(s.port) + " to " + c.text +
                         " is already a destination of service '" + it->second.first + "' (" +
                         At(it->second.second) + ")");
        if (++ndest > cap_.destinations)
          Fail(line, "too many service destinations: a policy holds at most " + std::to_string(cap_.destinations) +
                         " (port, cidr) pairs, a service without cidrs counting one");
      }
      if (const YamlNode* cg = val.Get("cgroup")) {
        std::string written;
        s.cgroup = CgroupOf(*cg, "service '" + s.name + "'", &s.components, &written);
        s.cgroup_line = cg->line;
        auto [it, fresh] = servers.emplace(s.port, std::make_pair(s.name, cg->line));
        if (!fresh)
          Fail(*cg, "service '" + s.name + "': port " + std::to_string(s.port) +
                        " already has a local server to protect, service '" + it->second.first + "' (" +
                        At(it->second.second) + "); one protected server per port");
      }
      p->services.push_back(s);
    }
  }

  void Rules(const YamlNode& rules, Policy* p) {
    if (rules.kind != YamlNode::kSequence) Fail(rules, "rules must be a list of { from, to, allow, deny, audit }");
    std::map<std::string, size_t> ident_ix, svc_ix;
    for (size_t i = 0; i < p->identities.size(); i++) ident_ix[p->identities[i].name] = i;
    for (size_t i = 0; i < p->services.size(); i++) svc_ix[p->services[i].name] = i;
    for (const auto& r : rules.items()) {
      if (r.kind != YamlNode::kMap) Fail(r, "a rule must be a mapping with from, to, allow, deny, audit");
      static const std::set<std::string> kRuleKeys{"from", "to", "allow", "deny", "audit"};
      OnlyKeys(r, kRuleKeys, "rule");
      if (p->rules.size() >= cap_.rules)
        Fail(r, "too many rules: a policy holds at most " + std::to_string(cap_.rules));
      Rule rule;
      rule.line = r.line;
      const YamlNode* from = r.Get("from");
      const YamlNode* to = r.Get("to");
      if (!from) Fail(r, "rule needs 'from: IDENTITY'");
      if (!to) Fail(r, "rule needs 'to: SERVICE'");
      rule.from = Scalar(*from, "from");
      rule.to = Scalar(*to, "to");
      if (!ident_ix.count(rule.from)) Fail(*from, "unknown identity '" + rule.from + "' (define it under identities)");
      if (!svc_ix.count(rule.to)) Fail(*to, "unknown service '" + rule.to + "' (define it under services)");
      {
        const Identity& id = p->identities[ident_ix[rule.from]];
        const Service& sv = p->services[svc_ix[rule.to]];
        if (!id.cgroup.empty() && id.cidrs.empty() && !sv.cgroup.empty())
          p->warnings.push_back(At(r.line) + ": warning: rule from '" + rule.from + "' to '" + rule.to +
                                "': '" + rule.from + "' names no cidrs, so the server side knows it by its cgroup "
                                "only when it calls from the server's network namespace (then each RPC is "
                                "decided once, on the client side, and the server side denies only what '" +
                                rule.to + "' does not allow); from another namespace or host its calls are "
                                "decided there as those of the identity their source address matches (none: "
                                "denied): give '" + rule.from + "' the cidrs its connections come from");
        if (id.cgroup.empty() && sv.cgroup.empty())
          Fail(*from, "rule from '" + rule.from + "' to '" + rule.to + "': identity '" + rule.from +
                          "' names callers by address (cidrs), which only a server on this host can tell, and "
                          "service '" + rule.to + "' names no local server (cgroup), so nothing here could "
                          "enforce this rule; give '" + rule.to + "' the cgroup of its server on this host");
      }
      if (const YamlNode* a = r.Get("allow")) rule.allow = Entries(*a, "allow");
      if (const YamlNode* d = r.Get("deny")) rule.deny = Entries(*d, "deny");
      if (const YamlNode* a = r.Get("audit")) {
        std::string v = Scalar(*a, "audit");
        if (v == "true") rule.audit = true;
        else if (v == "false") rule.audit = false;
        else Fail(*a, "audit must be true or false, not '" + v + "'");
      }
      if (rule.allow.empty() && rule.deny.empty()) Fail(r, "rule allows and denies nothing (add allow: or deny:)");
      if (rule.audit && !rule.allow.empty())
        p->warnings.push_back(At(rule.allow.front().line) +
                              ": warning: allow entries of an audit rule change nothing: a dry-run rule never "
                              "grants; move them to a rule without 'audit: true' to allow them");
      p->rules.push_back(std::move(rule));
    }
    // a pair whose rules all audit has nothing enforcing that allows: its
    // RPCs are all denied, as they would be without those rules
    std::map<std::pair<std::string, std::string>, std::pair<bool, int>> pairs;  // -> (all audit, first line)
    for (const auto& rule : p->rules) {
      auto [it, fresh] = pairs.emplace(std::make_pair(rule.from, rule.to), std::make_pair(rule.audit, rule.line));
      if (!fresh) it->second.first = it->second.first && rule.audit;
    }
    for (const auto& [pair, v] : pairs)
      if (v.first)
        p->warnings.push_back(At(v.second) + ": warning: every rule from '" + pair.first + "' to '" + pair.second +
                              "' audits, so none allows: all its RPCs are denied, as without these rules");
  }

  Policy Parse(const std::string& text) {
    YamlNode root = ParseYaml(text, file_);
    Policy p;
    p.file = file_;
    if (root.kind == YamlNode::kNull) Fail(root.line ? root.line : 1, "policy is empty (expected identities, services and rules)");
    if (root.kind != YamlNode::kMap) Fail(root, "policy must be a mapping with identities, services and rules");
    OnlyKeys(root, {"identities", "services", "rules"}, "policy");
    if (const YamlNode* ids = root.Get("identities")) Identities(*ids, &p);
    if (const YamlNode* svcs = root.Get("services")) Services(*svcs, &p);
    if (const YamlNode* rules = root.Get("rules")) Rules(*rules, &p);
    CheckNames(p);
    return p;
  }

  // gw_names holds, per generation, every identity, service, rule and
  // distinct method entry; gw_policy every (identity, service) pair.
  void CheckNames(const Policy& p) const {
    size_t names = p.identities.size() + p.services.size() + p.rules.size() + 1;  // + the default entry
    for (const auto& s : p.services) names += !s.cgroup.empty();  // + a protected server's cgroup
    std::set<std::pair<std::string, std::string>> pairs;
    std::set<std::string> patterns;
    std::set<const void*> lists;  // a list seen before has no pattern to add
    for (const auto& r : p.rules) {
      if (pairs.emplace(r.from, r.to).second && pairs.size() > cap_.pairs)
        Fail(r.line, "too many (identity, service) pairs with rules: a policy holds at most " +
                         std::to_string(cap_.pairs));
      for (const auto* list : {&r.allow, &r.deny})
        if (lists.insert(list->id()).second)
          for (const auto& e : *list) {
            // an enforcing deny entry (not `*`) has a second, in any case
            const bool fold = list == &r.deny && !r.audit && e.pattern != "*";
            if ((patterns.insert(e.pattern).second | (fold && patterns.insert("\x01" + Lower(e.pattern)).second)) &&
                names + patterns.size() > cap_.names)
              Fail(e.line, "too many names (identities, services, rules and distinct method entries; an "
                           "enforcing deny entry counts twice): a policy holds at most " + std::to_string(cap_.names));
          }
    }
  }

 private:
  std::string file_;
  std::string root_;
  Capacity cap_;
  std::map<const void*, EntryList> lists_;  // by the YAML children they were read from
};

// the datapath's own character classes (hpack_tables.h), so a policy name
// and the :path check can never disagree on a character
bool ServiceChar(char c) { return gw_path_class[static_cast<unsigned char>(c)] & GW_PATHC_SERVICE; }
bool MethodChar(char c) { return gw_path_class[static_cast<unsigned char>(c)] & GW_PATHC_METHOD; }

}  // namespace

const std::vector<Entry>& EntryList::all() const {
  static const std::vector<Entry> kNone;
  return list_ ? *list_ : kNone;
}

const std::vector<std::pair<std::string, std::vector<std::string>>>& Presets() {
  static const std::vector<std::pair<std::string, std::vector<std::string>>> kPresets = {
      {"health", {"/grpc.health.v1.Health/*"}},
      {"reflection", {"/grpc.reflection.v1alpha.ServerReflection/*", "/grpc.reflection.v1.ServerReflection/*"}},
  };
  return kPresets;
}

std::string CheckEntry(const std::string& s) {
  if (s == "*") return "";
  if (s.empty() || s[0] != '/') {
    std::string presets;
    for (const auto& p : Presets()) presets += (presets.empty() ? "" : ", ") + p.first;
    return "must start with '/' (/package.Service/Method, /package.Service/* or *), or be a preset: " + presets;
  }
  auto second = s.find('/', 1);
  if (second == std::string::npos) return "expected /package.Service/Method";
  std::string svc = s.substr(1, second - 1), method = s.substr(second + 1);
  if (svc.empty()) return "empty service name";
  if (!std::all_of(svc.begin(), svc.end(), ServiceChar)) return "service name may hold only letters, digits, '.' and '_'";
  if (method.empty()) return "empty method name (use /" + svc + "/* for every method)";
  // a wildcard whose shortest match is longer than any :path the datapath
  // decides could never match
  if (s.size() >= GW_PATH_MAX) return "longer than " + std::to_string(GW_PATH_MAX - 1) + " bytes, the longest :path grpcwall decides";
  if (method == "*") return "";
  if (method.find('*') != std::string::npos) return "'*' only stands alone: /package.Service/* or *";
  if (!std::all_of(method.begin(), method.end(), MethodChar)) return "method name may hold only letters, digits, '_', '.' and '-'";
  return "";
}

MatchKey KeyOf(std::string_view p) {
  if (p == "*") return {GW_MATCH_ANY, ""};
  if (p.size() >= 2 && p.compare(p.size() - 2, 2, "/*") == 0)
    return {GW_MATCH_SERVICE, p.substr(0, p.size() - 1)};
  return {GW_MATCH_EXACT, p};
}

uint64_t MethodHash(std::string_view s, gw_match_kind kind, uint64_t k0, uint64_t k1) {
  unsigned char buf[GW_HASH_BUF] = {};
  size_t n = std::min(s.size(), sizeof(buf));
  std::copy_n(s.begin(), n, buf);
  return gw_siphash(buf, static_cast<__u32>(n), k0, k1, kind);
}

uint64_t FoldKey(std::string_view lower, gw_match_kind kind, uint64_t k0, uint64_t k1) {
  struct gw_hash_path buf {};
  const size_t n = std::min<size_t>(lower.size(), sizeof(buf.b));
  std::memcpy(buf.b, lower.data(), n);
  return GW_FOLD_KEY(static_cast<uint32_t>(gw_hash_path(&buf, static_cast<uint32_t>(n), k0, k1, kind)));
}

const char* VerdictName(uint8_t v) {
  switch (v) {
    case GW_VERDICT_ALLOW: return "allow";
    case GW_VERDICT_DENY: return "deny";
    case GW_VERDICT_AUDIT: return "audit";
    default: return "none";
  }
}

Policy ParsePolicy(const std::string& text, const std::string& file, const std::string& cgroup_root,
                   const Capacity& cap) {
  return Parser(file, cgroup_root, cap).Parse(text);
}

std::string FindCgroup2Mount() {
  std::ifstream in("/proc/self/mounts");
  std::string dev, dir, type, rest;
  while (in >> dev >> dir >> type && std::getline(in, rest))
    if (type == "cgroup2") return dir;
  return "";
}

Policy LoadPolicyFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot read policy file: " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParsePolicy(ss.str(), path, FindCgroup2Mount());
}

namespace {
std::vector<std::string> SplitPath(const std::string& p) {
  std::vector<std::string> out;
  std::stringstream ss(p);
  for (std::string c; std::getline(ss, c, '/');)
    if (!c.empty() && c != ".") out.push_back(c);
  return out;
}
}  // namespace

std::string CanonicalCgroup(const std::string& written, const std::string& cgroup_root,
                            std::vector<std::string>* components) {
  if (written.find('\0') != std::string::npos) return "cgroup path holds a NUL byte";
  std::vector<std::string> comps = SplitPath(written);
  for (const auto& c : comps)
    if (c == "..") return "cgroup path " + written + " holds '..': write it from the cgroup v2 root";
  // an absolute path under the v2 mount is taken from the mount
  const std::vector<std::string> mount = SplitPath(cgroup_root);
  if (!written.empty() && written[0] == '/' && !mount.empty() && comps.size() >= mount.size() &&
      std::equal(mount.begin(), mount.end(), comps.begin()))
    comps.erase(comps.begin(), comps.begin() + static_cast<long>(mount.size()));
  if (comps.empty())
    return "cgroup " + written + " is the cgroup v2 root: every process is in it, and grpcwall cannot police it; name "
           "a cgroup below it";
  if (comps.size() > GW_CGROUP_DEPTH)
    return "cgroup " + written + " is " + std::to_string(comps.size()) + " levels deep; identities can be at most " +
           std::to_string(GW_CGROUP_DEPTH) + " levels below the cgroup v2 root";
  for (const auto& c : comps)
    if (c.size() > GW_CGROUP_NAME_MAX)
      return "cgroup name '" + c + "' is longer than " + std::to_string(GW_CGROUP_NAME_MAX) +
             " bytes, which grpcwall cannot match";
  *components = std::move(comps);
  return "";
}

namespace {

// What the entries written for one method-table key say, over every rule
// of a pair: the first rule (lowest id) of each kind of entry, 0 if none.
struct KeyFacts {
  uint16_t allow = 0, deny = 0, audit_deny = 0;
  std::string_view pattern;  // into the Policy: no copy per entry
};

// The README's semantics for one path, given every entry that matches it,
// most specific first: an enforcing deny wins; else an enforcing allow,
// reported as AUDIT where an audit deny matches too; else denied. Audit
// entries never change what passes: an audit rule's allow grants nothing.
gw_method_val Resolve(std::initializer_list<const KeyFacts*> matching) {
  gw_method_val v{};
  v.verdict = GW_VERDICT_DENY;
  uint16_t allow = 0, audit = 0;
  for (const KeyFacts* f : matching) {
    if (!f) continue;
    if (f->deny) {  // an enforcing deny anywhere wins
      v.rule = f->deny;
      return v;
    }
    if (!allow) allow = f->allow;
    if (!audit) audit = f->audit_deny;
  }
  if (allow) {
    v.verdict = audit ? GW_VERDICT_AUDIT : GW_VERDICT_ALLOW;
    v.rule = audit ? audit : allow;
  }
  return v;
}

}  // namespace

namespace {

// The method table of one pair from its rules (in id order), with rule ids
// local to them: 1 for rules[0], 2 for rules[1], ...
std::vector<CompiledMethod> CompileTable(const Policy& p, const std::vector<size_t>& rules, uint64_t k0,
                                         uint64_t k1) {
  // (kind, hashed string) -> facts; ordered for stable output
  using Key = std::pair<gw_match_kind, std::string_view>;  // views into the Policy's entries
  std::map<Key, KeyFacts> table;
  for (size_t i = 0; i < rules.size(); i++) {
    const Rule& r = p.rules[rules[i]];
    const uint16_t id = static_cast<uint16_t>(i + 1);
    auto note = [&](const Entry& e, uint16_t KeyFacts::*field) {
      MatchKey mk = KeyOf(e.pattern);
      KeyFacts& f = table[{mk.kind, mk.hashed}];
      f.pattern = e.pattern;
      if (!(f.*field)) f.*field = id;
    };
    if (!r.audit)
      for (const auto& e : r.allow) note(e, &KeyFacts::allow);
    for (const auto& e : r.deny) note(e, r.audit ? &KeyFacts::audit_deny : &KeyFacts::deny);
  }

  auto find = [&](gw_match_kind kind, std::string_view hashed) -> const KeyFacts* {
    auto it = table.find({kind, hashed});
    return it == table.end() ? nullptr : &it->second;
  };
  const KeyFacts* any = find(GW_MATCH_ANY, "");
  // An enforcing deny entry (exact or /pkg.Svc/*) matches a path in any
  // ASCII case (a server may route method names ignoring case: ASP.NET
  // Core's, under grpc-dotnet): each once more in lower case, as a key the
  // datapath looks up for a path a wildcard lets pass; an exact key it
  // matches is denied here. The first deny rule of a folded string names
  // the verdict.
  std::map<std::pair<gw_match_kind, std::string>, std::pair<uint16_t, std::string_view>> folds;
  for (const auto& [key, facts] : table) {
    if (!facts.deny || (key.first != GW_MATCH_EXACT && key.first != GW_MATCH_SERVICE)) continue;
    const std::string lower = Lower(key.second);
    const gw_match_kind fk = key.first == GW_MATCH_EXACT ? GW_MATCH_EXACT_FOLD : GW_MATCH_SERVICE_FOLD;
    auto [it, fresh] = folds.emplace(std::make_pair(fk, lower), std::make_pair(facts.deny, facts.pattern));
    if (!fresh && facts.deny < it->second.first) it->second = {facts.deny, facts.pattern};
  }
  std::vector<CompiledMethod> methods;
  methods.reserve(table.size() + 1);
  // The datapath takes the most specific key it finds (exact, service,
  // `*`, default), so each key carries the verdict of every entry that
  // matches the paths it is the most specific key for.
  for (const auto& [key, facts] : table) {
    gw_method_val v{};
    if (key.first == GW_MATCH_EXACT) {
      const std::string_view svc = key.second.substr(0, key.second.find('/', 1) + 1);
      v = Resolve({&facts, find(GW_MATCH_SERVICE, svc), any});
      if (v.verdict != GW_VERDICT_DENY) {
        auto folded = folds.find({GW_MATCH_EXACT_FOLD, Lower(key.second)});
        if (folded == folds.end()) folded = folds.find({GW_MATCH_SERVICE_FOLD, Lower(svc)});
        if (folded != folds.end()) {
          v = gw_method_val{};
          v.verdict = GW_VERDICT_DENY;
          v.rule = folded->second.first;
        }
      }
    } else if (key.first == GW_MATCH_SERVICE) {
      v = Resolve({&facts, any});
    } else {
      v = Resolve({&facts});
    }
    v.kind = static_cast<uint8_t>(key.first);
    v.format = GW_TABLE_FORMAT;
    CompiledMethod m;
    m.hash = MethodHash(key.second, key.first, k0, k1);
    m.val = v;
    m.pattern = facts.pattern;
    methods.push_back(m);
  }
  for (const auto& [key, v] : folds) {
    CompiledMethod m;
    m.hash = FoldKey(key.second, key.first, k0, k1);
    m.val.verdict = GW_VERDICT_DENY;
    m.val.rule = v.first;
    m.val.kind = static_cast<uint8_t>(key.first);
    m.val.format = GW_TABLE_FORMAT;
    m.pattern = v.second;
    methods.push_back(m);
  }
  CompiledMethod d;  // what no entry matches
  d.hash = MethodHash("", GW_MATCH_DEFAULT, k0, k1);
  d.pattern = "*default*";
  d.val.verdict = GW_VERDICT_DENY;
  d.val.kind = GW_MATCH_DEFAULT;
  d.val.format = GW_TABLE_FORMAT;
  methods.push_back(d);
  return methods;
}

}  // namespace

CompiledPolicy Compile(const Policy& p, uint64_t k0, uint64_t k1) {
  CompiledPolicy out;
  out.identities = p.identities;
  out.services = p.services;
  std::map<std::string, uint16_t> ident_id, service_id;
  for (size_t i = 0; i < p.identities.size(); i++) ident_id[p.identities[i].name] = static_cast<uint16_t>(i + 1);
  for (size_t i = 0; i < p.services.size(); i++) service_id[p.services[i].name] = static_cast<uint16_t>(i + 1);

  // (ident, service) -> its rules (indexes into p.rules), in id order
  std::map<std::pair<uint16_t, uint16_t>, std::vector<size_t>> pairs;
  out.rules.reserve(p.rules.size());
  for (size_t i = 0; i < p.rules.size(); i++) {
    const Rule& r = p.rules[i];
    out.rules.push_back(CompiledRule{static_cast<uint16_t>(i + 1), r.from, r.to, r.audit, r.line});
    pairs[{ident_id[r.from], service_id[r.to]}].push_back(i);
  }

  // A table depends on its pair's rules only through their entries and
  // audit flags, in order, and on which of them each verdict names: pairs
  // whose rules have the same (shared) lists, as a YAML alias gives them,
  // are compiled once with rule ids local to the pair, then given theirs.
  // Those pairs share the table in the kernel too (gw_pair_rules maps its
  // local rule numbers to each pair's rule ids).
  using Shape = std::vector<std::tuple<const void*, const void*, bool>>;  // (allow, deny, audit) per rule
  std::map<Shape, size_t> compiled;
  out.pairs.reserve(pairs.size());
  for (const auto& [pk, rules] : pairs) {
    Shape shape;
    shape.reserve(rules.size());
    for (size_t i : rules) shape.emplace_back(p.rules[i].allow.id(), p.rules[i].deny.id(), p.rules[i].audit);
    auto it = compiled.find(shape);
    if (it == compiled.end()) {
      it = compiled.emplace(std::move(shape), out.tables.size()).first;
      out.tables.push_back(CompileTable(p, rules, k0, k1));
      for (auto& m : out.tables.back())
        if (m.val.rule) m.val.local = 1;
    }
    CompiledPair cp{pk.first, pk.second, it->second, {}};
    cp.rules.reserve(rules.size());
    for (size_t i : rules) cp.rules.push_back(out.rules[i].id);
    out.pairs.push_back(std::move(cp));
  }
  return out;
}

std::vector<CompiledMethod> PairMethods(const CompiledPolicy& cp, const CompiledPair& pair) {
  std::vector<CompiledMethod> methods = cp.tables.at(pair.table);
  for (auto& m : methods) {
    if (m.val.local && m.val.rule) m.val.rule = pair.rules.at(m.val.rule - 1);
    m.val.local = 0;
  }
  return methods;
}

}  // namespace gw
