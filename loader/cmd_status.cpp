// grpcwall status: attached or not, where, which programs, counters.
#include <vector>
#include <cstring>
#include <bpf/bpf.h>
#include <unistd.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "error.h"
#include "live.h"
#include "proxy.h"
#include "system.h"

namespace gw {
namespace {

struct StatusOptions {
  std::string pin_dir;
  bool json = false;
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

void Status(const StatusOptions& o) {
  RequireRoot("status");
  nlohmann::json j;
  j["pin_dir"] = o.pin_dir;
  if (!PinDirAttached(o.pin_dir)) {
    j["attached"] = false;
    if (o.json)
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
                    {"guard_in", guard_in_id}};
  j["ingress_guard_attached"] = guard_in_on;
  j["max_connections"] = max_conns;
  const auto holds = HoldSlotsBusy(o.pin_dir);
  j["server_side"] = {{"hold_slots", holds.first}, {"hold_slots_busy", holds.second}};
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
  if (o.json) {
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return;
  }
  std::cout << "grpcwall: " << (j["attached"].get<bool>() ? "attached" : "partly attached (run attach again)") << "\n"
            << "  pin dir:      " << o.pin_dir << "\n"
            << "  cgroup:       " << cgroup << "\n"
            << "  programs:     sockops id " << sockops_id << ", sk_msg id " << skmsg_id << ", egress guard id "
            << guard_id << ", server-side sk_skb id " << skskb_id << ", ingress guard id " << guard_in_id
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
            << holds.second << " of " << holds.first << "\n"
            << "                segments dropped by the ingress guard: for protected listeners " << c[GW_CNT_SRV_REFUSED]
            << " (MPTCP, or at the most walked connections), payload of unwalked connections "
            << c[GW_CNT_SRV_UNWALKED] << "\n"
            << "  send path:    segments held back by the egress guard " << c[GW_CNT_GUARD_DROPS]
            << ", short writes followed " << c[GW_CNT_SHORT_WRITES] << "\n"
            << "  events lost:  " << c[GW_CNT_EVENTS_LOST] << "\n"
            << "  fallback:     " << (helper ? "helper running (pid " + std::to_string(helper) + ")" : std::string("no helper: continued/oversized header blocks fail closed")) << "\n"
            << "                diverted " << c[GW_CNT_FALLBACK_BLOCKS] << " blocks / " << c[GW_CNT_FALLBACK_BYTES]
            << " bytes, back to the kernel " << c[GW_CNT_FALLBACK_RESUMED] << "; in userspace " << fb.blocks
            << " blocks (" << fb.big_blocks << " big): allowed " << fb.allowed << ", denied " << fb.denied
            << ", audited " << fb.audited << ", failed " << fb.failed << "; pool slots busy "
            << BusyPoolSlots(o.pin_dir) << " of " << GW_POOL_SLOTS << "\n";
}

}  // namespace

void RegisterStatus(CLI::App& app) {
  auto o = std::make_shared<StatusOptions>();
  auto* sub = app.add_subcommand("status", "Show whether grpcwall is attached, where, the live policy generation and\n"
                                           "the datapath counters (RPCs allowed/denied/audited, connections tracked)");
  AddPinDir(sub, &o->pin_dir);
  sub->add_flag("--json", o->json, "print as JSON");
  sub->callback([o] { Status(*o); });
}

}  // namespace gw
