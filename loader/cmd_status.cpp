// grpcwall status: attached or not, where, which programs, counters; as
// text, JSON or the Prometheus text exposition format.
#include <vector>
#include <cstring>
#include <bpf/bpf.h>
#include <unistd.h>

#include <iostream>
#include <map>
#include <ostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "error.h"
#include "kernel.h"
#include "live.h"
#include "proxy.h"
#include "system.h"

namespace gw {
namespace {

struct StatusOptions {
  std::string pin_dir;
  std::string format = "text";  // text, json, prometheus
  bool json = false;            // --json: --format json
};

uint32_t PinnedProgId(const std::string& path) {
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) return 0;
  Fd f(fd);
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(f.get(), &info, &len) != 0) return 0;
  return info.id;
}

const char* kCounterNames[GW_CNT_MAX] = {
    "allowed",         "denied",          "audited",      "fallback_blocks", "fallback_bytes", "parse_errors",
    "conns_opened",    "conns_closed",    "header_blocks", "conns_failed",   "events_lost",
    "conns_reset",     "fallback_resumed", "guard_drops", "short_writes",
    "repeat_blocks",   "scratch_next",     "server_conns",    "server_holds",
    "server_holds_replayed", "server_conns_failed", "server_refused", "server_unwalked_drops",
    "server_permission_denied", "server_answers_kept",
};

// gw_srv_hold_owners: (slots, slots a connection holds)
std::pair<uint32_t, uint32_t> HoldSlotsBusy(const std::string& pin_dir) {
  Fd m(bpf_obj_get(MapPin(pin_dir, "gw_srv_hold_owners").c_str()));
  bpf_map_info info{};
  uint32_t len = sizeof(info), busy = 0;
  if (!m || bpf_obj_get_info_by_fd(m.get(), &info, &len) != 0) return {0, 0};
  for (uint32_t i = 0; i < info.max_entries; i++) {
    gw_hold_owner h{};
    if (bpf_map_lookup_elem(m.get(), &i, &h) == 0 && h.owner) busy++;
  }
  return {info.max_entries, busy};
}

// gw_limits.hold_share: hold slots one identity may hold (0: no limit, or
// a pin dir of an older grpcwall without one)
uint32_t HoldShare(const std::string& pin_dir) {
  gw_limits l{};
  return ReadLimits(pin_dir, &l) ? l.hold_share : 0;
}

std::string HoldShareText(uint32_t share) {
  return share ? "at most " + std::to_string(share) + " per identity" : "no limit per identity";
}

// "; public-terminal 2, kiosk 1": who holds the busy slots
std::string HoldersText(const nlohmann::json& by) {
  std::string t;
  for (const auto& [name, n] : by.items()) t += (t.empty() ? "; " : ", ") + name + " " + std::to_string(n.get<uint32_t>());
  return t;
}

// The Prometheus text exposition format (version 0.0.4), as node_exporter's
// textfile collector reads it: each family once, its HELP and TYPE lines
// first, then its samples; no timestamps (the collector refuses them).
class PromText {
 public:
  using Labels = std::vector<std::pair<const char*, std::string>>;
  explicit PromText(std::ostream& out) : out_(out) {}

  void Family(const std::string& name, const char* type, const std::string& help) {
    out_ << "# HELP " << name << " " << Escape(help, false) << "\n# TYPE " << name << " " << type << "\n";
  }
  void Sample(const std::string& name, const Labels& labels, uint64_t value) {
    out_ << name;
    for (size_t i = 0; i < labels.size(); i++)
      out_ << (i ? "," : "{") << labels[i].first << "=\"" << Escape(labels[i].second, true) << "\"";
    out_ << (labels.empty() ? " " : "} ") << value << "\n";
  }
  // a family of one sample without labels
  void One(const std::string& name, const char* type, const std::string& help, uint64_t value) {
    Family(name, type, help);
    Sample(name, {}, value);
  }

 private:
  // backslash and newline; in a label value the double quote too
  static std::string Escape(const std::string& s, bool label) {
    std::string out;
    for (char ch : s) {
      if (ch == '\\') out += "\\\\";
      else if (ch == '\n') out += "\\n";
      else if (ch == '"' && label) out += "\\\"";
      else out += ch;
    }
    return out;
  }
  std::ostream& out_;
};

// A rule's labels: the identity and service it is for (its text is
// "FROM -> TO", names of [A-Za-z0-9._-] only), and where the policy file
// states it, FILE:LINE as `policy show` names it. Rules written on one line
// (YAML flow style) share FILE:LINE: those after the first there get #2,
// #3.. in policy order, so that every rule is one series.
struct RuleLabels {
  std::string identity, service, rule;
};
std::vector<RuleLabels> LabelRules(const std::vector<LiveRule>& rules) {
  std::vector<RuleLabels> out;
  std::map<std::string, int> at;  // rules seen at a FILE:LINE
  for (const auto& r : rules) {
    RuleLabels l;
    const auto arrow = r.what.find(" -> ");
    l.identity = arrow == std::string::npos ? r.what : r.what.substr(0, arrow);
    l.service = arrow == std::string::npos ? "" : r.what.substr(arrow + 4);
    const int n = ++at[r.where];
    l.rule = n == 1 ? r.where : r.where + "#" + std::to_string(n);
    out.push_back(l);
  }
  return out;
}

const char* const kAttachedHelp =
    "1: grpcwall's programs are attached and pinned at the pin dir; 0: not attached, or only partly (run attach "
    "again)";

// `status --format prometheus`: every value of `status --json` under
// "counters", "fallback" and "server_side" (the same numbers, read once),
// plus each rule's counters of `policy show`.
void PrintPrometheus(std::ostream& out, const nlohmann::json& j, const LivePolicy& live) {
  PromText p(out);
  const auto& rules = live.rules;
  const auto& c = j["counters"];
  const auto& fb = j["fallback"];
  auto n = [](const nlohmann::json& v) { return v.get<uint64_t>(); };
  p.One("grpcwall_attached", "gauge", kAttachedHelp, j["attached"].get<bool>() ? 1 : 0);
  // the generation the rules were read with (an apply may have come after j's)
  p.One("grpcwall_policy_generation", "gauge",
        "Generation of the live policy (0: none, nothing is policed); every policy apply moves it and "
        "starts grpcwall_rpcs_total of the new policy's rules at 0",
        live.config.generation);

  p.Family("grpcwall_rpcs_total", "counter",
           "RPCs decided in the kernel under each rule of the live policy, by verdict; identity and service: "
           "the rule's from and to; rule: where the policy file states it (FILE:LINE, as policy show names it)");
  const auto labels = LabelRules(rules);
  for (size_t i = 0; i < rules.size(); i++) {
    const auto& l = labels[i];
    const std::pair<const char*, uint64_t> by_verdict[] = {{"allowed", rules[i].counters.allowed},
                                                           {"denied", rules[i].counters.denied},
                                                           {"audited", rules[i].counters.audited}};
    for (const auto& v : by_verdict)
      p.Sample("grpcwall_rpcs_total",
               {{"verdict", v.first}, {"identity", l.identity}, {"service", l.service}, {"rule", l.rule}}, v.second);
  }
  p.Family("grpcwall_kernel_rpcs_total", "counter",
           "RPCs decided in the kernel since attach, by verdict: under a rule or by a default (no rule); per "
           "rule: grpcwall_rpcs_total, in the fallback helper: grpcwall_fallback_helper_rpcs_total");
  for (const char* v : {"allowed", "denied", "audited"}) p.Sample("grpcwall_kernel_rpcs_total", {{"verdict", v}}, n(c[v]));
  p.One("grpcwall_header_blocks_total", "counter", "HTTP/2 header blocks the kernel walked", n(c["header_blocks"]));
  p.One("grpcwall_header_blocks_repeated_total", "counter",
        "Allowed header blocks that repeated the connection's last allowed one byte for byte (decided unparsed)",
        n(c["repeat_blocks"]));
  p.One("grpcwall_parse_errors_total", "counter", "Header blocks the kernel could not parse", n(c["parse_errors"]));
  p.One("grpcwall_scratch_next_total", "counter",
        "Walks that ran in a scratch slot past the CPU's first (a run preempted mid-walk held it)",
        n(c["scratch_next"]));
  p.One("grpcwall_events_lost_total", "counter", "Deny/audit events lost: the ring buffer was full",
        n(c["events_lost"]));

  p.One("grpcwall_connections_tracked", "gauge", "Policed connections open now", n(c["conns_tracked"]));
  p.One("grpcwall_connections_max", "gauge", "Policed connections that can be tracked at once",
        n(j["max_connections"]));
  p.One("grpcwall_connections_opened_total", "counter", "Policed connections opened", n(c["conns_opened"]));
  // no connections_closed: status derives it (opened - tracked, two reads
  // apart), so it can dip, which a counter must not; rate(opened) and
  // connections_tracked say the same
  p.One("grpcwall_connections_failed_total", "counter", "Policed connections failed closed", n(c["conns_failed"]));
  p.One("grpcwall_connections_reset_total", "counter",
        "Connections reset because they predated attach or the policy that polices them (their clients reconnect)",
        n(c["conns_reset"]));
  p.One("grpcwall_egress_guard_drops_total", "counter", "Segments the egress guard held back", n(c["guard_drops"]));
  p.One("grpcwall_short_writes_total", "counter", "Writes sent only in part, followed on", n(c["short_writes"]));

  p.One("grpcwall_server_connections_total", "counter", "Server side: accepted connections walked on receive",
        n(c["server_conns"]));
  p.One("grpcwall_server_connections_failed_total", "counter", "Server side: connections failed closed",
        n(c["server_conns_failed"]));
  p.One("grpcwall_server_holds_total", "counter", "Server side: HEADERS frames held back until whole",
        n(c["server_holds"]));
  p.One("grpcwall_server_holds_replayed_total", "counter",
        "Server side: held HEADERS frames with decided bytes before them (replayed)", n(c["server_holds_replayed"]));
  p.One("grpcwall_server_refused_segments_total", "counter",
        "Server side: segments for protected listeners dropped by the ingress guard (MPTCP, or at the most "
        "walked connections)",
        n(c["server_refused"]));
  p.One("grpcwall_server_unwalked_dropped_segments_total", "counter",
        "Server side: payload segments of protected servers' connections that are not walked, dropped",
        n(c["server_unwalked_drops"]));
  p.One("grpcwall_server_permission_denied_total", "counter",
        "Server side: answers to denied RPCs turned into PERMISSION_DENIED from grpcwall",
        n(c["server_permission_denied"]));
  p.One("grpcwall_server_answers_kept_total", "counter",
        "Server side: answers to denied RPCs left as the server wrote them (the caller sees UNIMPLEMENTED or "
        "the server's own status)",
        n(c["server_answers_kept"]));
  p.One("grpcwall_server_hold_slots", "gauge", "Server side: slots for held HEADERS frames",
        n(j["server_side"]["hold_slots"]));
  p.One("grpcwall_server_hold_slots_busy", "gauge", "Server side: hold slots a connection holds now",
        n(j["server_side"]["hold_slots_busy"]));
  p.One("grpcwall_server_hold_slots_per_identity", "gauge",
        "Server side: hold slots the callers of one identity may hold at once (attach --hold-slots-per-identity)",
        n(j["server_side"]["hold_slots_per_identity"]));
  p.Family("grpcwall_server_hold_slots_busy_by_identity", "gauge",
           "Server side: hold slots the callers of an identity hold now (counted as its share is)");
  for (const auto& [name, held] : j["server_side"]["hold_slots_by_identity"].items())
    p.Sample("grpcwall_server_hold_slots_busy_by_identity", {{"identity", name}}, held.get<uint64_t>());
  p.One("grpcwall_ingress_guard_attached", "gauge",
        "1: the ingress guard is attached (the live policy protects a server on this host)",
        j["ingress_guard_attached"].get<bool>() ? 1 : 0);

  p.One("grpcwall_fallback_running", "gauge",
        "1: the fallback helper runs; 0: continued or oversized header blocks fail closed",
        fb["running"].get<bool>() ? 1 : 0);
  p.One("grpcwall_fallback_diverted_total", "counter",
        "Times the kernel handed a connection to the fallback helper (a header block continued or over its bound)",
        n(fb["diverted_blocks"]));
  p.One("grpcwall_fallback_diverted_bytes_total", "counter", "Bytes the kernel redirected to the fallback helper",
        n(fb["diverted_bytes"]));
  p.One("grpcwall_fallback_resumed_total", "counter", "Diverted connections back on the kernel path",
        n(fb["resumed"]));
  p.One("grpcwall_fallback_helper_blocks_total", "counter", "Header blocks the fallback helper decided",
        n(fb["blocks"]));
  p.One("grpcwall_fallback_helper_big_blocks_total", "counter",
        "Header blocks the fallback helper decided that were continued or over the kernel's bound",
        n(fb["big_blocks"]));
  p.One("grpcwall_fallback_helper_bytes_total", "counter", "Bytes the fallback helper passed through",
        n(fb["bytes"]));
  p.Family("grpcwall_fallback_helper_rpcs_total", "counter", "RPCs the fallback helper decided, by verdict");
  for (const char* v : {"allowed", "denied", "audited"})
    p.Sample("grpcwall_fallback_helper_rpcs_total", {{"verdict", v}}, n(fb[v]));
  p.One("grpcwall_fallback_helper_failed_total", "counter", "Connections the fallback helper could not follow",
        n(fb["failed"]));
  p.One("grpcwall_fallback_pool_slots", "gauge", "Fallback pool slots", n(fb["slots"]));
  p.One("grpcwall_fallback_pool_slots_busy", "gauge", "Fallback pool slots not free", n(fb["slots_busy"]));
}

void Status(const StatusOptions& o) {
  RequireRoot("status");
  nlohmann::json j;
  j["pin_dir"] = o.pin_dir;
  if (!PinDirAttached(o.pin_dir)) {
    j["attached"] = false;
    if (o.format == "prometheus")  // a textfile collector shows it, rather than the last scrape
      PromText(std::cout).One("grpcwall_attached", "gauge", kAttachedHelp, 0);
    else if (o.format == "json")
      std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    else
      std::cout << "grpcwall: not attached (nothing pinned at " << o.pin_dir << ")\n";
    return;
  }
  LiveMaps live = LiveMaps::Open(o.pin_dir);
  gw_config cfg = ReadConfig(live);
  gw_name_val meta{};
  std::string cgroup = ReadName(live, 0, GW_NAMEKIND_META, 0, &meta) ? meta.text : "?";
  std::string file = ReadName(live, 0, GW_NAMEKIND_META, 1 + GW_SLOT_OF(cfg.generation), &meta) ? meta.text : "";
  uint32_t sockops_id = PinnedProgId(o.pin_dir + "/prog_sockops");
  uint32_t skmsg_id = PinnedProgId(o.pin_dir + "/prog_sk_msg");
  uint32_t skskb_id = PinnedProgId(o.pin_dir + "/prog_sk_skb");
  uint32_t srvmsg_id = PinnedProgId(o.pin_dir + "/prog_srv_msg");
  uint32_t guard_id = PinnedProgId(o.pin_dir + "/prog_guard");
  uint32_t guard_in_id = PinnedProgId(o.pin_dir + "/prog_guard_in");
  // attached only while the live policy protects a server (SyncIngressGuard)
  bool guard_in_on = false;
  {  // pinned and still at a cgroup (a link detached by hand, or whose cgroup went, guards nothing)
    Fd l(bpf_obj_get((o.pin_dir + "/link_guard_in").c_str()));
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    guard_in_on = l && bpf_obj_get_info_by_fd(l.get(), &info, &len) == 0 && info.cgroup.cgroup_id != 0;
  }
  bool link = access((o.pin_dir + "/link_sockops").c_str(), F_OK) == 0 &&
              access((o.pin_dir + "/link_guard").c_str(), F_OK) == 0;
  uint32_t max_conns = 0;
  {
    Fd sh(bpf_obj_get(MapPin(o.pin_dir, "gw_sockhash").c_str()));
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (sh && bpf_obj_get_info_by_fd(sh.get(), &info, &len) == 0) max_conns = info.max_entries;
  }
  auto c = ReadCounters(live);
  // closes are not counted in the datapath (a STATE_CB would run sockops
  // twice more per connection): every opened one no longer in the sockhash
  const uint64_t tracked = TrackedConns(o.pin_dir);
  c[GW_CNT_CONNS_CLOSED] = c[GW_CNT_CONNS_OPENED] > tracked ? c[GW_CNT_CONNS_OPENED] - tracked : 0;

  j["attached"] = link && sockops_id && skmsg_id && guard_id;
  j["cgroup"] = cgroup;
  j["programs"] = {{"sockops", sockops_id}, {"sk_msg", skmsg_id}, {"guard", guard_id}, {"sk_skb", skskb_id},
                    {"srv_msg", srvmsg_id}, {"guard_in", guard_in_id}};
  j["ingress_guard_attached"] = guard_in_on;
  j["max_connections"] = max_conns;
  const auto holds = HoldSlotsBusy(o.pin_dir);
  j["server_side"] = {{"hold_slots", holds.first}, {"hold_slots_busy", holds.second},
                      {"hold_slots_per_identity", HoldShare(o.pin_dir)}};
  {  // whose callers hold them (counted by identity, as the share is)
    nlohmann::json by = nlohmann::json::object();
    for (const auto& [name, n] : HoldsByIdentity(live)) by[name] = n;
    j["server_side"]["hold_slots_by_identity"] = by;
  }
  j["policy"] = {{"generation", cfg.generation}, {"slot", GW_SLOT_OF(cfg.generation)}, {"file", file}};
  nlohmann::json counters;
  for (int i = 0; i < GW_CNT_MAX; i++) counters[kCounterNames[i]] = c[i];
  counters["conns_tracked"] = tracked;
  j["counters"] = counters;
  gw_fb_stats fb = ReadFallbackStats(o.pin_dir);
  pid_t helper = RunningProxy(o.pin_dir);
  j["fallback"] = {{"running", helper != 0},       {"pid", helper},          {"log", DefaultProxyLog(o.pin_dir)},
                   {"diverted_blocks", c[GW_CNT_FALLBACK_BLOCKS]},          {"diverted_bytes", c[GW_CNT_FALLBACK_BYTES]},
                   {"resumed", c[GW_CNT_FALLBACK_RESUMED]}, {"blocks", fb.blocks},
                   {"big_blocks", fb.big_blocks}, {"bytes", fb.bytes},     {"allowed", fb.allowed},
                   {"denied", fb.denied},         {"audited", fb.audited}, {"failed", fb.failed},
                   {"slots", GW_POOL_SLOTS},      {"slots_busy", BusyPoolSlots(o.pin_dir)}};
  if (o.format == "prometheus") {
    PrintPrometheus(std::cout, j, ReadLivePolicy(live));
    return;
  }
  j["features"] = FeaturesJson(o.pin_dir);  // (kernel.cpp) what this kernel lets grpcwall do
  if (o.format == "json") {
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return;
  }
  std::cout << "grpcwall: " << (j["attached"].get<bool>() ? "attached" : "partly attached (run attach again)") << "\n"
            << "  pin dir:      " << o.pin_dir << "\n"
            << "  cgroup:       " << cgroup << "\n"
            << "  programs:     sockops id " << sockops_id << ", sk_msg id " << skmsg_id << ", egress guard id "
            << guard_id << ", server-side sk_skb id " << skskb_id << ", sk_msg id " << srvmsg_id << ", ingress guard id " << guard_in_id
            << (guard_in_on ? " (attached)" : " (not attached: the live policy protects no server)") << "\n"
            << "  policy:       ";
  if (cfg.generation)
    std::cout << "generation " << cfg.generation << " from " << file << "\n";
  else
    std::cout << "none (nothing is policed)\n";
  std::cout << "  rpcs:         allowed " << c[GW_CNT_ALLOWED] << ", denied " << c[GW_CNT_DENIED] << ", audited "
            << c[GW_CNT_AUDITED] << "\n"
            << "  header blocks " << c[GW_CNT_HEADER_BLOCKS] << " (" << c[GW_CNT_REPEATS]
            << " allowed as a repeat of the last, unparsed), parse errors " << c[GW_CNT_PARSE_ERRORS]
            << ", fallback " << c[GW_CNT_FALLBACK_BLOCKS] << " blocks / " << c[GW_CNT_FALLBACK_BYTES] << " bytes\n"
            << "  connections:  tracked " << tracked << " (opened "
            << c[GW_CNT_CONNS_OPENED] << ", closed " << c[GW_CNT_CONNS_CLOSED] << ", failed closed "
            << c[GW_CNT_DROPPED_CONNS] << ", reset as predating " << c[GW_CNT_CONNS_RESET] << "; at most "
            << max_conns << ")\n"
            << "  server side:  accepted connections walked on receive " << c[GW_CNT_SRV_CONNS]
            << " (failed closed " << c[GW_CNT_SRV_FAILED] << "), HEADERS frames held back until whole "
            << c[GW_CNT_SRV_HOLDS] << " (" << c[GW_CNT_SRV_REPLAYS] << " with decided bytes replayed); hold slots busy "
            << holds.second << " of " << holds.first << " (" << HoldShareText(j["server_side"]["hold_slots_per_identity"].get<uint32_t>())
            << HoldersText(j["server_side"]["hold_slots_by_identity"]) << ")\n"
            << "                segments dropped by the ingress guard: for protected listeners " << c[GW_CNT_SRV_REFUSED]
            << " (MPTCP, or at the most walked connections), payload of unwalked connections "
            << c[GW_CNT_SRV_UNWALKED] << "\n"
            << "                answers to denied RPCs: PERMISSION_DENIED " << c[GW_CNT_SRV_PERM_DENIED]
            << ", left as the server wrote them " << c[GW_CNT_SRV_ANSWERS_KEPT] << "\n"
            << "  send path:    segments held back by the egress guard " << c[GW_CNT_GUARD_DROPS]
            << ", short writes followed " << c[GW_CNT_SHORT_WRITES] << "\n"
            << "  events lost:  " << c[GW_CNT_EVENTS_LOST] << "\n"
            << "  fallback:     " << (helper ? "helper running (pid " + std::to_string(helper) + ")" : std::string("no helper: continued/oversized header blocks fail closed")) << "\n"
            << "                diverted " << c[GW_CNT_FALLBACK_BLOCKS] << " blocks / " << c[GW_CNT_FALLBACK_BYTES]
            << " bytes, back to the kernel " << c[GW_CNT_FALLBACK_RESUMED] << "; in userspace " << fb.blocks
            << " blocks (" << fb.big_blocks << " big): allowed " << fb.allowed << ", denied " << fb.denied
            << ", audited " << fb.audited << ", failed " << fb.failed << "; pool slots busy "
            << BusyPoolSlots(o.pin_dir) << " of " << GW_POOL_SLOTS << "\n";
  std::cout << FeaturesText(o.pin_dir);
}

}  // namespace

void RegisterStatus(CLI::App& app) {
  auto o = std::make_shared<StatusOptions>();
  auto* sub = app.add_subcommand("status", "Show whether grpcwall is attached, where, the live policy generation and\n"
                                           "the datapath counters (RPCs allowed/denied/audited, connections tracked)");
  AddPinDir(sub, &o->pin_dir);
  auto* format =
      sub->add_option("--format", o->format,
                      "text (default), json, or prometheus: every counter, gauge and rule counter in the Prometheus\n"
                      "text exposition format, for node_exporter's textfile collector. Write it to a temporary\n"
                      "file and rename it into place, so that the collector never reads a half-written file:\n"
                      "  grpcwall status --format prometheus > /var/lib/prometheus/node-exporter/grpcwall.prom.$$ &&\n"
                      "    mv /var/lib/prometheus/node-exporter/grpcwall.prom.$$ /var/lib/prometheus/node-exporter/grpcwall.prom\n"
                      "(not attached: grpcwall_attached 0 alone, exit 0)")
          ->check(CLI::IsMember({"text", "json", "prometheus"}));
  sub->add_flag("--json", o->json, "print as JSON (--format json)")->excludes(format);
  sub->callback([o] {
    if (o->json) o->format = "json";
    Status(*o);
  });
}

}  // namespace gw
