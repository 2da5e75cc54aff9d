// The policy language: YAML parsed into a Policy with line numbers, and a
// pure compiler from Policy to the contents of the BPF maps.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

extern "C" {
#include "grpcwall.h"
}

namespace gw {

struct Identity {
  std::string name;
  std::string cgroup;  // as written: relative to the cgroup v2 root, or absolute
  int line = 0;
};

// IPv4 or IPv6 prefix, kept as IPv6 (IPv4 as v4-mapped ::ffff:a.b.c.d, the
// form the datapath sees every address in).
struct Cidr {
  uint8_t addr[16] = {};  // network order
  uint8_t len = 0;        // over all 128 bits (IPv4 /n: 96 + n)
  bool v4 = false;
  std::string text;
};

struct Service {
  std::string name;
  uint16_t port = 0;  // host order
  std::vector<Cidr> cidrs;  // empty: any address
  int line = 0;
};

struct Entry {
  std::string pattern;  // "/pkg.Svc/Method", "/pkg.Svc/*" or "*"
  int line = 0;
};

struct Rule {
  std::string from, to;
  std::vector<Entry> allow, deny;
  bool audit = false;
  int line = 0;
};

struct Policy {
  std::string file;
  std::vector<Identity> identities;
  std::vector<Service> services;
  std::vector<Rule> rules;
};

// Parses YAML text; throws InputError("FILE:LINE: message") on bad input.
Policy ParsePolicy(const std::string& text, const std::string& file);
Policy LoadPolicyFile(const std::string& path);

// Checks one method entry; returns "" when valid, else what is wrong.
std::string CheckEntry(const std::string& pattern);

// How an entry is keyed in a method table: kind + the string hashed.
struct MatchKey {
  gw_match_kind kind;
  std::string hashed;
};
MatchKey KeyOf(const std::string& pattern);

uint64_t MethodHash(const std::string& s, gw_match_kind kind, uint64_t k0, uint64_t k1);

// ---- compiled form: exactly what goes into the maps ----
struct CompiledMethod {
  uint64_t hash = 0;
  gw_method_val val{};
  std::string pattern;  // "*default*" for GW_MATCH_DEFAULT
};

struct CompiledPair {
  uint16_t ident = 0, service = 0;
  std::vector<CompiledMethod> methods;
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
};

CompiledPolicy Compile(const Policy& p, uint64_t k0, uint64_t k1);

// Ranks verdicts for merging: deny beats audit beats allow.
int VerdictRank(uint8_t v);
const char* VerdictName(uint8_t v);

}  // namespace gw
