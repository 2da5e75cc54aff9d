// The policy language: YAML parsed into a Policy with line numbers, and a
// pure compiler from Policy to the contents of the BPF maps.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

extern "C" {
#include "grpcwall.h"
}

namespace gw {

// IPv4 or IPv6 prefix, kept as IPv6 (IPv4 as v4-mapped ::ffff:a.b.c.d, the
// form the datapath sees every address in).
struct Cidr {
  uint8_t addr[16] = {};  // network order
  uint8_t len = 0;        // over all 128 bits (IPv4 /n: 96 + n)
  bool v4 = false;
  std::string text;       // canonical: "10.0.0.1/32", "fd00:250::/32"
};

// An identity is a local workload (its cgroup: its connections are policed
// on the client side), callers by source address (cidrs: matched on the
// server side, by a service with a cgroup), or both.
struct Identity {
  std::string name;
  // One spelling per cgroup: "/a/b", the path below the cgroup v2 root
  // ("cloudcity//terminal", "./cloudcity/terminal", "/cloudcity/terminal"
  // and "<v2 mount>/cloudcity/terminal" are all "/cloudcity/terminal").
  // Empty: an identity of cidrs only.
  std::string cgroup;
  std::vector<std::string> components;  // {"a", "b"}: what the kernel keys
  std::string written;                  // as in the file, for messages
  std::vector<Cidr> cidrs;              // callers' source prefixes
  int line = 0;
};

struct Service {
  std::string name;
  uint16_t port = 0;  // host order
  std::vector<Cidr> cidrs;  // empty: any address
  // The local server (server side): connections its cgroup (or one below
  // it) accepts on `port` are walked on receive. Empty: none on this host.
  std::string cgroup;
  std::vector<std::string> components;
  int cgroup_line = 0;
  int line = 0;
};

struct Entry {
  std::string pattern;  // "/pkg.Svc/Method", "/pkg.Svc/*" or "*"
  int line = 0;
  std::string preset;   // the word it was written as (kPresets), or empty
};

// One word in an allow/deny list for the services any gRPC server may
// expose: `health` and `reflection` (both reflection versions).
const std::vector<std::pair<std::string, std::vector<std::string>>>& Presets();

// A rule's allow or deny entries: immutable, and shared by the rules that
// one YAML alias gives the same list (`allow: *methods`), so 10,000 rules
// x 100 aliased methods hold 100 entries, not a million copies.
class EntryList {
 public:
  EntryList() = default;
  explicit EntryList(std::vector<Entry> entries)
      : list_(std::make_shared<const std::vector<Entry>>(std::move(entries))) {}
  const std::vector<Entry>& all() const;
  std::vector<Entry>::const_iterator begin() const { return all().begin(); }
  std::vector<Entry>::const_iterator end() const { return all().end(); }
  size_t size() const { return all().size(); }
  bool empty() const { return all().empty(); }
  const Entry& operator[](size_t i) const { return all()[i]; }
  const Entry& front() const { return all().front(); }
  // The same id: the same entries (null for none).
  const void* id() const { return list_.get(); }

 private:
  std::shared_ptr<const std::vector<Entry>> list_;
};

struct Rule {
  std::string from, to;
  EntryList allow, deny;
  bool audit = false;
  int line = 0;
};

struct Policy {
  std::string file;
  std::vector<Identity> identities;
  std::vector<Service> services;
  std::vector<Rule> rules;
  // "FILE:LINE: warning: ..." for what is valid but does not do what it
  // seems to (an audit rule's allow entries, a pair whose rules all audit)
  std::vector<std::string> warnings;
};

// What one policy generation may hold: half of each map the two slots
// share (bpf/maps.h), so a policy that fits can always be applied while
// the other slot holds one that fits too.
struct Capacity {
  size_t identities = GW_MAX_IDENTITIES - 1;      // ids 1..16383 (gw_idents: 2 x 16384)
  size_t services = GW_MAX_SERVICES - 1;          // ids 1..1023
  size_t destinations = GW_MAX_SERVICES * 4;      // gw_services LPM trie: 2 x 4096
  size_t rules = GW_MAX_RULES - 1;                // ids 1..32767 (counters: 2 x 32768)
  size_t pairs = GW_MAX_PAIRS;                    // gw_policy: 2 x 65536
  size_t names = (GW_MAX_NAMES - 3) / 2;          // gw_names, less 3 meta entries
  size_t peer_cidrs = GW_MAX_PEER_CIDRS;          // gw_peers LPM trie: 2 x 4096
};

// Parses YAML text; throws InputError("FILE:LINE: message") on bad input.
// `cgroup_root` is the cgroup v2 mount point ("" if none): an absolute
// identity path under it is taken from there, any other path is below the
// v2 root.
Policy ParsePolicy(const std::string& text, const std::string& file, const std::string& cgroup_root = "",
                   const Capacity& cap = Capacity());
// Reads and parses a file, with this machine's cgroup v2 mount as the root.
Policy LoadPolicyFile(const std::string& path);
// The cgroup v2 mount point from /proc/self/mounts, "" if there is none.
std::string FindCgroup2Mount();
// "/a/b" -> components, for a cgroup path as a policy may write it;
// returns "" when fine, else what is wrong.
std::string CanonicalCgroup(const std::string& written, const std::string& cgroup_root,
                            std::vector<std::string>* components);

// Checks one method entry; returns "" when valid, else what is wrong.
std::string CheckEntry(const std::string& pattern);

// How an entry is keyed in a method table: kind + the string hashed.
// `hashed` is a view into the pattern KeyOf was given.
struct MatchKey {
  gw_match_kind kind;
  std::string_view hashed;
};
MatchKey KeyOf(std::string_view pattern);

uint64_t MethodHash(std::string_view s, gw_match_kind kind, uint64_t k0, uint64_t k1);
// The method-table key of a deny entry's path (or "/pkg.Svc/") in ASCII
// lower case (kind GW_MATCH_EXACT_FOLD / GW_MATCH_SERVICE_FOLD), as the
// datapath makes it from a :path in any case (GW_FOLD_KEY).
uint64_t FoldKey(std::string_view lower, gw_match_kind kind, uint64_t k0, uint64_t k1);

// ---- compiled form: exactly what goes into the maps ----
struct CompiledMethod {
  uint64_t hash = 0;
  gw_method_val val{};
  std::string_view pattern;  // "*default*" for GW_MATCH_DEFAULT; a view into the Policy compiled
};

// A pair's method table is tables[table]: its entries name rules by their
// place among the pair's rules (val.local = 1, val.rule 1-based into
// `rules`), so pairs whose rules have the same entries share one table.
struct CompiledPair {
  uint16_t ident = 0, service = 0;
  size_t table = 0;
  std::vector<uint16_t> rules;  // the pair's rule ids, in the order its table counts them
};

struct CompiledRule {
  uint16_t id = 0;
  std::string from, to;
  bool audit = false;
  int line = 0;
};

struct CompiledPolicy {
  std::vector<Identity> identities;  // id = index + 1
  std::vector<Service> services;     // id = index + 1
  std::vector<CompiledRule> rules;   // id = index + 1
  std::vector<CompiledPair> pairs;
  std::vector<std::vector<CompiledMethod>> tables;  // rule numbers local to a pair
};

// The result's patterns are views into `p`: keep `p` while it is used.
CompiledPolicy Compile(const Policy& p, uint64_t k0, uint64_t k1);

// A pair's table with rule ids (val.local 0): what a pair with a table of
// its own holds, and what `policy show` prints.
std::vector<CompiledMethod> PairMethods(const CompiledPolicy& cp, const CompiledPair& pair);

const char* VerdictName(uint8_t v);

}  // namespace gw
