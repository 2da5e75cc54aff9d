// grpcwall policy check|apply|show
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "descriptors.h"
#include "error.h"
#include "kernel.h"
#include "live.h"
#include "pin_dir.h"
#include "system.h"

namespace gw {
namespace {

struct PolicyOptions {
  std::string file;
  std::string pin_dir;
  bool json = false;
  std::string descriptor_set;  // check: protoc -o FILE --include_imports
  bool strict = false;         // check: a warning is an error
};

std::string IdentityCidrs(const Identity& id) {
  std::string out;
  for (const auto& c : id.cidrs) out += (out.empty() ? "" : ",") + c.text;
  return out;
}

std::string ServiceDest(const Service& s) {
  std::string out;
  for (const auto& c : s.cidrs) out += (out.empty() ? "" : ",") + c.text;
  return out.empty() ? "any" : out;
}

// The compiled form seen the same way as the live one, so that check and
// show print through one function.
LivePolicy ViewOf(const Policy& p, const CompiledPolicy& cp) {
  LivePolicy v;
  v.file = p.file;
  for (size_t i = 0; i < cp.identities.size(); i++)
    v.identities.push_back({static_cast<uint16_t>(i + 1), cp.identities[i].name, cp.identities[i].cgroup, 0,
                            IdentityCidrs(cp.identities[i])});
  for (size_t i = 0; i < cp.services.size(); i++)
    v.services.push_back({static_cast<uint16_t>(i + 1), cp.services[i].name, ServiceDest(cp.services[i]),
                          cp.services[i].port, cp.services[i].cgroup});
  for (const auto& r : cp.rules)
    v.rules.push_back({r.id, r.from + " -> " + r.to, p.file + ":" + std::to_string(r.line), r.audit, {}});
  for (const auto& pair : cp.pairs) {
    const Identity& id = cp.identities[pair.ident - 1];
    const Service& sv = cp.services[pair.service - 1];
    LivePair lp{id.name, sv.name, {}, {}};
    // client side: the workload's own connections (sk_msg); server side:
    // what the service's local server accepts (sk_skb), callers by address
    if (!id.cgroup.empty())
      lp.sides.push_back("client side: connections of cgroup " + id.cgroup + " to port " + std::to_string(sv.port) +
                         (sv.cidrs.empty() ? "" : " at " + ServiceDest(sv)));
    if (!sv.cgroup.empty())
      lp.sides.push_back(id.cidrs.empty() ? "server side: the server in cgroup " + sv.cgroup +
                                                " knows '" + id.name + "' by its cgroup in its own network "
                                                "namespace (each RPC counted once, on the client side); "
                                                "from elsewhere by address, and '" + id.name +
                                                "' names none: its calls there are decided as those of the "
                                                "identity their source address matches (none: denied)"
                                          : "server side: connections the server in cgroup " + sv.cgroup +
                                                " accepts from " + IdentityCidrs(id));
    for (const auto& m : PairMethods(cp, pair)) lp.methods.push_back({std::string(m.pattern), m.hash, m.val});
    std::sort(lp.methods.begin(), lp.methods.end(), [](const LiveMethod& a, const LiveMethod& b) {
      // (what no entry matches last)
      auto rank = [](uint8_t kind) { return kind == GW_MATCH_DEFAULT ? 255 : kind; };
      return std::make_pair(rank(a.val.kind), a.pattern) < std::make_pair(rank(b.val.kind), b.pattern);
    });
    v.pairs.push_back(std::move(lp));
  }
  return v;
}

nlohmann::json ToJson(const LivePolicy& v, bool live) {
  nlohmann::json j;
  if (live) {
    j["generation"] = v.config.generation;
    j["slot"] = GW_SLOT_OF(v.config.generation);
  }
  j["file"] = v.file;
  j["identities"] = nlohmann::json::array();
  for (const auto& i : v.identities) {
    nlohmann::json e{{"id", i.id}, {"name", i.name}, {"cgroup", i.cgroup}};
    if (!i.cidrs.empty()) e["cidrs"] = i.cidrs;
    if (live) e["path_key"] = i.path_key;
    j["identities"].push_back(e);
  }
  j["services"] = nlohmann::json::array();
  for (const auto& s : v.services) {
    nlohmann::json e{{"id", s.id}, {"name", s.name}, {"port", s.port}, {"cidrs", s.dest}};
    if (!s.server_cgroup.empty()) e["server_cgroup"] = s.server_cgroup;
    j["services"].push_back(e);
  }
  j["rules"] = nlohmann::json::array();
  for (const auto& r : v.rules) {
    nlohmann::json e{{"id", r.id}, {"rule", r.what}, {"source", r.where}, {"audit", r.audit}};
    if (live) e["counters"] = {{"allowed", r.counters.allowed}, {"denied", r.counters.denied}, {"audited", r.counters.audited}};
    j["rules"].push_back(e);
  }
  j["grants"] = nlohmann::json::array();
  for (const auto& p : v.pairs) {
    nlohmann::json methods = nlohmann::json::array();
    for (const auto& m : p.methods)
      methods.push_back({{"match", m.pattern},
                         {"verdict", VerdictName(m.val.verdict)},
                         {"rule", m.val.rule},
                         {"any_case", m.val.kind == GW_MATCH_EXACT_FOLD || m.val.kind == GW_MATCH_SERVICE_FOLD}});
    nlohmann::json g{{"from", p.ident}, {"to", p.service}, {"methods", methods}};
    if (!live) g["enforced"] = p.sides;
    j["grants"].push_back(g);
  }
  return j;
}

void PrintText(const LivePolicy& v, bool live) {
  if (live) std::cout << "generation " << v.config.generation << " (slot " << GW_SLOT_OF(v.config.generation) << ") from " << v.file << "\n";
  std::cout << "identities:\n";
  for (const auto& i : v.identities) {
    std::cout << "  " << std::left << std::setw(20) << i.name;
    if (!i.cgroup.empty()) std::cout << " cgroup " << i.cgroup;
    if (!i.cidrs.empty()) std::cout << " cidrs " << i.cidrs;
    std::cout << "\n";
  }
  std::cout << "services:\n";
  for (const auto& s : v.services)
    std::cout << "  " << std::left << std::setw(20) << s.name << " port " << s.port << " to " << s.dest
              << (s.server_cgroup.empty() ? "" : "; its server here: cgroup " + s.server_cgroup + " (server side)")
              << "\n";
  std::cout << "grants:\n";
  for (const auto& p : v.pairs) {
    std::cout << "  " << p.ident << " -> " << p.service << ":\n";
    for (const auto& side : p.sides) std::cout << "    (" << side << ")\n";
    for (const auto& m : p.methods) {
      std::string what = m.val.kind == GW_MATCH_DEFAULT ? "(anything else)" : m.pattern;
      // a deny entry again, for a path no exact entry names: in any case
      if (m.val.kind == GW_MATCH_EXACT_FOLD || m.val.kind == GW_MATCH_SERVICE_FOLD) what += " (in any case)";
      std::cout << "    " << std::left << std::setw(6) << VerdictName(m.val.verdict) << " " << std::setw(44) << what;
      if (m.val.rule) std::cout << " rule " << m.val.rule;
      std::cout << "\n";
    }
  }
  std::cout << "rules:\n";
  for (const auto& r : v.rules) {
    std::cout << "  " << r.id << ": " << r.what << (r.audit ? " (audit)" : "") << " at " << r.where;
    if (live)
      std::cout << "  allowed " << r.counters.allowed << " denied " << r.counters.denied << " audited "
                << r.counters.audited;
    std::cout << "\n";
  }
}

void Check(const PolicyOptions& o) {
  Policy p = LoadPolicyFile(o.file);
  std::vector<DescriptorWarning> dw;
  if (!o.descriptor_set.empty()) dw = CheckAgainst(p, LoadDescriptorSet(o.descriptor_set), o.descriptor_set);
  for (const auto& w : p.warnings) std::cerr << w << "\n";
  for (const auto& w : dw) std::cerr << w.message << "\n";
  CompiledPolicy cp = Compile(p, 0, 0);
  LivePolicy v = ViewOf(p, cp);
  if (o.json) {
    nlohmann::json j = ToJson(v, false);
    j["warnings"] = p.warnings;
    if (!o.descriptor_set.empty()) {
      j["descriptor_warnings"] = nlohmann::json::array();
      for (const auto& w : dw)
        j["descriptor_warnings"].push_back({{"file", p.file}, {"line", w.line}, {"entry", w.entry}, {"message", w.message}});
    }
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << o.file << ": OK: " << p.identities.size() << " identities, " << p.services.size() << " services, "
              << p.rules.size() << " rules";
    if (!o.descriptor_set.empty())
      std::cout << "; " << dw.size() << " entr" << (dw.size() == 1 ? "y names" : "ies name") << " what "
                << o.descriptor_set << " does not define";
    std::cout << "\n";
    PrintText(v, false);
  }
  const size_t warned = p.warnings.size() + dw.size();
  if (o.strict && warned)
    throw InputError(o.file + ": " + std::to_string(warned) + " warning" + (warned == 1 ? "" : "s") +
                     " (above), an error under --strict");
}

void Apply(const PolicyOptions& o) {
  Policy p = LoadPolicyFile(o.file);
  for (const auto& w : p.warnings) std::cerr << w << "\n";
  RequireRoot("policy apply");
  PretendMissing();           // a bad GRPCWALL_KERNEL_PRETEND refused before the flip, not after
  LiveMaps::Open(o.pin_dir);  // nothing attached: said before waiting for the lock
  Fd lock = LockPinDir(o.pin_dir);
  // under the lock: the maps (and attach cgroup) of what is attached now,
  // not of one a detach removed while this apply waited
  if (HasStaging(o.pin_dir))  // the live programs may not be the pinned maps' yet
    throw Error(kSystem, "an upgrade of " + o.pin_dir + " died half way (" + o.pin_dir + "/" + kStagingDir +
                             "): nothing was applied; run 'grpcwall attach --pin-dir " + o.pin_dir +
                             " POLICY' with this version, which finishes it");
  LiveMaps live = LiveMaps::Open(o.pin_dir);
  IdentityPaths paths = ResolveIdentities(p, AttachCgroup(live));
  uint64_t gen = ApplyPolicy(live, p, paths);
  std::cout << "policy generation " << gen << " live from " << o.file << "\n";
  int reset = ResetAfterFlip(o.pin_dir, gen, "apply again");
  if (reset)
    std::cout << "reset " << reset << " connection(s) that this policy makes policed: their clients reconnect under it\n";
}

void Show(const PolicyOptions& o) {
  RequireRoot("policy show");
  LiveMaps live = LiveMaps::Open(o.pin_dir);
  LivePolicy v = ReadLivePolicy(live);
  if (o.json) {
    std::cout << ToJson(v, true).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return;
  }
  if (v.config.generation == 0) {
    std::cout << "no policy is live at " << o.pin_dir << ": nothing is policed\n";
    return;
  }
  PrintText(v, true);
}

}  // namespace

void RegisterPolicy(CLI::App& app) {
  auto* pol = app.add_subcommand("policy", "Check, apply and show policies");
  pol->require_subcommand(1);

  auto co = std::make_shared<PolicyOptions>();
  auto* check = pol->add_subcommand("check",
                                    "Validate a policy file and print what it grants. Needs no root and no kernel.\n"
                                    "Bad input: 'FILE:LINE: what is wrong' on stderr, exit 1.");
  check->add_option("FILE", co->file, "policy YAML")->required()->check(CLI::ExistingFile);
  check->add_flag("--json", co->json, "print the summary as JSON (warnings under \"warnings\" and \"descriptor_warnings\")");
  check->add_option("--descriptor-set", co->descriptor_set,
                    "a FileDescriptorSet of the services the policy names (protoc -o FILE --include_imports\n"
                    "your.proto ...): entries naming a service or method it does not define are reported as\n"
                    "FILE:LINE: warning (a typo there is a method silently denied)")
      ->check(CLI::ExistingFile);
  check->add_flag("--strict", co->strict, "exit 1 when there is any warning");
  check->callback([co] { Check(*co); });

  auto ao = std::make_shared<PolicyOptions>();
  auto* apply = pol->add_subcommand("apply",
                                    "Compile FILE and swap it into the live maps atomically: the next RPC of every\n"
                                    "connection, existing ones included, is decided by it. Exits 0 once it is live.");
  apply->add_option("FILE", ao->file, "policy YAML")->required()->check(CLI::ExistingFile);
  AddPinDir(apply, &ao->pin_dir);
  apply->callback([ao] { Apply(*ao); });

  auto so = std::make_shared<PolicyOptions>();
  auto* show = pol->add_subcommand("show", "Print the live policy, read back from the maps, with rule counters");
  AddPinDir(show, &so->pin_dir);
  show->add_flag("--json", so->json, "print as JSON");
  show->callback([so] { Show(*so); });
}

}  // namespace gw
