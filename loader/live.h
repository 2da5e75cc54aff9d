// The live state under a pin dir: the pinned maps, the policy they hold,
// and the counters.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "policy.h"
#include "system.h"

extern "C" {
#include "grpcwall.h"
}

namespace gw {

#define GW_NAMEKIND_META 4
// GW_NAMEKIND_SERVICE entries from this id on: id - GW_NAME_SRV_CGROUP is a
// service whose server this host protects; text: that server's cgroup
#define GW_NAME_SRV_CGROUP 0x10000  // slot 0: id 0 attach cgroup, id 1 + slot: policy file

struct LiveMaps {
  std::string pin_dir;
  Fd config, idents, services, policy, names, counters, rule_counters;
  Fd svc_ports;   // absent in a pin dir an older grpcwall attached (its guard reads none)
  Fd pair_rules;  // the same (its programs read rule ids in every table)
  Fd peers, srv_ports;  // the server side (absent before it)
  Fd srv_port_bits;     // ... and before its ingress guard
  Fd ident_shares, hold_shares;  // hold shares by identity name (absent before them)
  // ApplyPolicy attaches and detaches the ingress guard (SyncIngressGuard);
  // false: the caller does (an upgrade's new set, whose guard goes on at the switch)
  bool sync_ingress_guard = true;
  static LiveMaps Open(const std::string& pin_dir);
};

// Writes gw_svc_ports[slot] from the slot's entries in gw_services (the
// egress guard's first test for sockets that are not policed).
void WriteServicePorts(const LiveMaps& m, uint32_t slot);

gw_config ReadConfig(const LiveMaps& m);
void WriteConfig(const LiveMaps& m, const gw_config& c);
// A fresh random SipHash key and the precomputed keys that go with it.
gw_config NewConfigKeys(const gw_config& c);

// Every identity's cgroup path as components below the cgroup v2 root, in
// order (the parser made them canonical and refused what the kernel cannot
// key). Throws InputError (FILE:LINE) for an identity outside
// `attach_cgroup` (its sockets never meet the sockops program, so it would
// never be policed; "" or the root: no such limit); warns on stderr for one
// that does not exist yet (its processes carry the identity once it is
// made). Touches no BPF state.
using IdentityPaths = std::vector<std::vector<std::string>>;
IdentityPaths ResolveIdentities(const Policy& p, const std::string& attach_cgroup);
// The cgroup the pin dir's programs are attached at (absolute).
std::string AttachCgroup(const LiveMaps& m);

// The datapath's key for a cgroup path (gw_cgroup_hash over its components).
uint64_t CgroupPathKey(const std::vector<std::string>& components, uint64_t k0, uint64_t k1);

// Compiles `p` with the live key, fills the inactive slot and flips to it.
// Returns the new generation. Throws Error(kSystem) for map failures.
uint64_t ApplyPolicy(const LiveMaps& m, const Policy& p, const IdentityPaths& paths);

// The ingress guard (prog_guard_in) is attached at the attach cgroup, by
// link_guard_in, exactly while the live policy protects a server: it runs
// for every segment a socket under that cgroup receives, so a policy of
// the client side only does not pay for it. SlotProtects: the slot names
// a protected server's port. SyncIngressGuard attaches it (true: it made
// the link) or takes it away; a pin dir without prog_guard_in (an older
// grpcwall's programs) is left as it is.
bool SlotProtects(const LiveMaps& m, uint32_t slot);
bool SyncIngressGuard(const LiveMaps& m, bool want);

void WriteName(const LiveMaps& m, uint32_t slot, uint32_t kind, uint64_t id, const std::string& text,
               const std::string& detail, uint64_t aux);
bool ReadName(const LiveMaps& m, uint32_t slot, uint32_t kind, uint64_t id, gw_name_val* out);

struct LiveMethod {
  std::string pattern;  // "?" when the name map has none
  uint64_t hash;
  gw_method_val val;
};
struct LivePair {
  std::string ident, service;
  std::vector<LiveMethod> methods;
  std::vector<std::string> sides;  // check only: where on this host it is enforced
};
struct LiveIdentity {
  uint16_t id;
  std::string name, cgroup;
  uint64_t path_key;  // gw_ident_key.path_hash
  std::string cidrs;  // the server side's callers by address, "a/n,b/m"
};
struct LiveService {
  uint16_t id;
  std::string name, dest;
  uint16_t port;
  std::string server_cgroup;  // the local server the server side protects
};
struct LiveRule {
  uint16_t id;
  std::string what, where;
  bool audit;
  gw_rule_counters counters{};
};
struct LivePolicy {
  gw_config config{};
  std::string file;
  std::vector<LiveIdentity> identities;
  std::vector<LiveService> services;
  std::vector<LiveRule> rules;
  std::vector<LivePair> pairs;
};
LivePolicy ReadLivePolicy(const LiveMaps& m);

// Resets policed-to-be connections that are not in the sockhash (they
// predate attach, or the policy that made them policed): runs the pinned
// iter/tcp program. Returns how many were reset.
// `outside`, if given, gets the listeners on a protected port made outside
// the service's cgroup, as (port, cgroup id), one per namespace they are in.
int ResetPredating(const std::string& pin_dir,
                   std::vector<std::pair<uint32_t, uint64_t>>* outside = nullptr);
// ResetPredating right after `generation` went live: a failure says the
// policy is live and what failed (and to `retry`). On a kernel without what
// the reset needs (ResetUnavailable) it warns what that costs, returns 0. Warns on stderr about
// listeners on a protected port made outside the service's cgroup (what
// they accept is not protected).
int ResetAfterFlip(const std::string& pin_dir, uint64_t generation, const std::string& retry);

// --- an upgrade's staged set (pin_dir/upgrading: UpgradeLocked, cmd_attach.cpp) ---
// GRPCWALL_UPGRADE_STOP_AT=STEP (tests only): the process ends at STEP as a
// kill would (staged, switched, guard_in, resets).
void UpgradeStopAt(const char* step);
// Once the sockops link runs the staged programs: the ingress guard (its
// link given the staged program, made, or taken away as the staged policy
// protects a server or not) and the egress guard's link onto the staged
// programs, then the marker. Each step can be done again.
void FinishSwitch(const std::string& pin_dir);
// Before attach or detach: a staged set a run left is finished (switch and
// move) when live, removed when not (the old programs never stopped
// enforcing). True when it moved one; the caller stops the fallback helper
// of the old maps first.
bool SettleStaging(const std::string& pin_dir);

std::vector<uint64_t> ReadCounters(const LiveMaps& m);  // summed over CPUs

// Gives the identities of `slot` (names[i]: identity i + 1) their share ids
// in gw_ident_shares: a name the live generation has keeps its id, a new
// one gets the lowest id that no name of the live generation has and under
// which no hold is counted (gw_srv_hold_shares); a name of the generation
// before it that the live one dropped gets its id back. ApplyPolicy calls
// it for the slot it fills; attach for the live slot of a pin dir whose
// maps predate the ids (legacy_keys: each identity gets the key the older
// programs count its holds under, slot * 16384 + number, so their holds and
// theirs are one count). Nothing for a pin dir without the maps.
void WriteIdentShares(const LiveMaps& m, uint32_t slot, const std::vector<std::string>& names,
                      bool legacy_keys = false);
// The same in two steps: the ids chosen (read while the slot's older names
// are still there), then written (once they are deleted).
struct IdentSharesPlan {
  std::vector<uint32_t> keys, vals;
};
IdentSharesPlan PlanIdentShares(const LiveMaps& m, uint32_t slot, const std::vector<std::string>& names,
                                bool legacy_keys = false);
void WriteIdentShares(const LiveMaps& m, const IdentSharesPlan& plan);
// The live slot's identity names, in order (identity i + 1 at i).
std::vector<std::string> LiveIdentityNames(const LiveMaps& m, uint32_t slot);
// The hold slots counted against each identity now (gw_srv_hold_shares), by
// the live generation's names; counts under an id no live identity has are
// summed as "(not in the live policy)", under none as "(no share id)".
std::vector<std::pair<std::string, uint32_t>> HoldsByIdentity(const LiveMaps& m);
// True when every identity of the live generation has a share id.
bool HasIdentShares(const LiveMaps& m, uint32_t slot, size_t identities);

// gw_limits as pinned under pin_dir; false when it is not there or not of
// this version's layout (a pin dir of an older or newer grpcwall)
bool ReadLimits(const std::string& pin_dir, gw_limits* out);
gw_rule_counters ReadRuleCounters(const LiveMaps& m, uint32_t slot, uint16_t rule);

}  // namespace gw
