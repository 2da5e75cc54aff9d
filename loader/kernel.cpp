#include "kernel.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <tuple>

#include "error.h"
#include "system.h"

namespace gw {
namespace {

// How a facility is probed.
enum class Kind {
  kBtf,        // /sys/kernel/btf/vmlinux is there
  kProgType,   // libbpf_probe_bpf_prog_type(prog)
  kMapType,    // libbpf_probe_bpf_map_type(map)
  kHelper,     // libbpf_probe_bpf_helper(each of progs, helper)
  kBtfFunc,    // a FUNC named `name` in the kernel's BTF (a kfunc, an iterator target)
  kBtfStruct,  // a STRUCT named `name`
  kBtfMember,  // STRUCT `name` has member `member` (a CO-RE read)
};

struct Probe {
  Facility f;
  Kind kind;
  std::vector<bpf_prog_type> progs;
  int id = 0;  // map type or helper id
  const char* name = nullptr;
  const char* member = nullptr;
};

Probe P(Facility f, Kind kind, std::vector<bpf_prog_type> progs = {}, int id = 0, const char* name = nullptr,
        const char* member = nullptr) {
  return Probe{std::move(f), kind, std::move(progs), id, name, member};
}

constexpr bpf_prog_type kSkb = BPF_PROG_TYPE_CGROUP_SKB, kMsg = BPF_PROG_TYPE_SK_MSG,
                        kSkSkb = BPF_PROG_TYPE_SK_SKB, kOps = BPF_PROG_TYPE_SOCK_OPS;

std::string ProgNames(const std::vector<bpf_prog_type>& progs) {
  std::string s;
  for (size_t i = 0; i < progs.size(); i++) {
    const char* n = libbpf_bpf_prog_type_str(progs[i]);
    s += (i == 0 ? "" : i + 1 == progs.size() ? " and " : ", ") + std::string(n ? n : "?");
  }
  return s;
}

Probe Helper(const char* name, int id, const char* since, std::vector<bpf_prog_type> progs,
             const char* loses = "", const char* key = nullptr) {
  return P({key ? key : name, std::string(name) + " in " + ProgNames(progs) + " programs", since, *loses != 0, loses},
           Kind::kHelper, progs, id);
}

// What build/grpcwall.bpf.o needs: its program types, map types, the
// helpers each program calls (bpftool prog dump xlated of each program),
// its kfunc and iterator target, and the kernel struct fields it reads
// with CO-RE whose layout changed. Versions: the first mainline release
// (README, "Kernels").
const std::vector<Probe>& Probes() {
  static const std::vector<Probe> probes = [] {
    std::vector<Probe> v;
    auto req = [](const char* key, const char* what, const char* since) { return Facility{key, what, since, false, ""}; };
    v.push_back(P(req("btf", "kernel BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)", "5.4"), Kind::kBtf));
    v.push_back(P(req("cgroup_skb", "cgroup_skb programs", "4.10"), Kind::kProgType, {kSkb}));
    v.push_back(P(req("sock_ops", "sock_ops programs", "4.13"), Kind::kProgType, {kOps}));
    v.push_back(P(req("sk_skb", "sk_skb programs", "4.14"), Kind::kProgType, {kSkSkb}));
    v.push_back(P(req("sk_msg", "sk_msg programs", "4.17"), Kind::kProgType, {kMsg}));
    const std::tuple<const char*, const char*, const char*, bpf_map_type> maps[] = {
        {"percpu_array", "per-CPU array maps", "4.6", BPF_MAP_TYPE_PERCPU_ARRAY},
        {"lru_hash", "LRU hash maps", "4.10", BPF_MAP_TYPE_LRU_HASH},
        {"lpm_trie", "LPM trie maps", "4.11", BPF_MAP_TYPE_LPM_TRIE},
        {"hash_of_maps", "hash-of-maps maps", "4.12", BPF_MAP_TYPE_HASH_OF_MAPS},
        {"sockhash", "sockhash maps", "4.18", BPF_MAP_TYPE_SOCKHASH},
        {"queue", "queue maps", "4.20", BPF_MAP_TYPE_QUEUE},
        {"sk_storage", "socket local storage maps", "5.2", BPF_MAP_TYPE_SK_STORAGE},
        {"ringbuf", "ring buffer maps", "5.8", BPF_MAP_TYPE_RINGBUF},
    };
    for (const auto& [key, what, since, type] : maps) v.push_back(P(req(key, what, since), Kind::kMapType, {}, type));
    v.push_back(P(req("cgroup_link", "BPF links at cgroups (BPF_LINK_CREATE, BPF_LINK_UPDATE)", "5.7"), Kind::kBtfStruct,
                  {}, 0, "bpf_cgroup_link"));
    v.push_back(P(req("sock_cgroup_data", "struct sock_cgroup_data with a cgroup pointer (read with CO-RE)", "5.15"),
                  Kind::kBtfMember, {}, 0, "sock_cgroup_data", "cgroup"));
    v.push_back(P(req("net_cookie", "struct net with a u64 net_cookie (read with CO-RE)", "5.12"), Kind::kBtfMember, {},
                  0, "net", "net_cookie"));
    // helpers, oldest first; where a helper came to a program type later
    // than it was added, the later version
    v.push_back(Helper("bpf_ktime_get_ns", BPF_FUNC_ktime_get_ns, "4.1", {kSkb, kMsg, kSkSkb, kOps}));
    v.push_back(Helper("bpf_skb_load_bytes", BPF_FUNC_skb_load_bytes, "4.5", {kSkb, kSkSkb}));
    v.push_back(Helper("bpf_skb_store_bytes", BPF_FUNC_skb_store_bytes, "4.14", {kSkSkb}));
    v.push_back(Helper("bpf_skb_change_tail", BPF_FUNC_skb_change_tail, "4.14", {kSkSkb}));
    v.push_back(Helper("bpf_get_socket_cookie", BPF_FUNC_get_socket_cookie, "4.12", {kSkb, kSkSkb, kOps}));
    v.push_back(Helper("bpf_setsockopt", BPF_FUNC_setsockopt, "4.13", {kOps}));
    v.push_back(Helper("bpf_sock_ops_cb_flags_set", BPF_FUNC_sock_ops_cb_flags_set, "4.16", {kOps}));
    v.push_back(Helper("bpf_msg_apply_bytes", BPF_FUNC_msg_apply_bytes, "4.17", {kMsg}));
    v.push_back(Helper("bpf_msg_cork_bytes", BPF_FUNC_msg_cork_bytes, "4.17", {kMsg}));
    v.push_back(Helper("bpf_msg_pull_data", BPF_FUNC_msg_pull_data, "4.17", {kMsg}));
    v.push_back(Helper("bpf_sock_hash_update", BPF_FUNC_sock_hash_update, "4.18", {kOps}));
    v.push_back(Helper("bpf_msg_redirect_hash", BPF_FUNC_msg_redirect_hash, "4.18", {kMsg}));
    v.push_back(Helper("bpf_sk_lookup_tcp", BPF_FUNC_sk_lookup_tcp, "4.20", {kSkSkb}));
    // the server side's answers to denied RPCs (gw_srv_msg)
    v.push_back(Helper("bpf_msg_push_data", BPF_FUNC_msg_push_data, "4.20", {kMsg}));
    v.push_back(Helper("bpf_msg_pop_data", BPF_FUNC_msg_pop_data, "5.0", {kMsg}));
    v.push_back(Helper("bpf_sk_release", BPF_FUNC_sk_release, "4.20", {kSkSkb}));
    v.push_back(Helper("bpf_sk_fullsock", BPF_FUNC_sk_fullsock, "5.1", {kSkb}));
    v.push_back(Helper("bpf_sk_storage_get", BPF_FUNC_sk_storage_get, "5.2", {kSkb, kOps}));
    v.push_back(Helper("bpf_sk_storage_delete", BPF_FUNC_sk_storage_delete, "5.2", {kOps}));
    // in sk_msg programs from 5.8 (the review; with abe3cac8706b's generic helpers)
    v.push_back(Helper("bpf_sk_storage_get", BPF_FUNC_sk_storage_get, "5.8", {kMsg}, "", "sk_msg_sk_storage_get"));
    v.push_back(Helper("bpf_sk_storage_delete", BPF_FUNC_sk_storage_delete, "5.8", {kMsg}, "",
                       "sk_msg_sk_storage_delete"));
    v.push_back(Helper("bpf_skb_adjust_room", BPF_FUNC_skb_adjust_room, "4.13", {kSkSkb}));
    v.push_back(Helper("bpf_probe_read_kernel", BPF_FUNC_probe_read_kernel, "5.8", {kSkb, kMsg, kSkSkb, kOps}));
    v.push_back(Helper("bpf_probe_read_kernel_str", BPF_FUNC_probe_read_kernel_str, "5.8", {kSkb, kMsg, kSkSkb, kOps}));
    v.push_back(Helper("bpf_ringbuf_reserve", BPF_FUNC_ringbuf_reserve, "5.8", {kSkb, kMsg, kSkSkb, kOps}));
    v.push_back(Helper("bpf_ringbuf_submit", BPF_FUNC_ringbuf_submit, "5.8", {kSkb, kMsg, kSkSkb, kOps}));
    v.push_back(Helper("bpf_skc_to_tcp_sock", BPF_FUNC_skc_to_tcp_sock, "5.9", {kSkb, kMsg, kSkSkb, kOps}));
    v.push_back(Helper("bpf_loop", BPF_FUNC_loop, "5.17", {kSkb, kMsg, kSkSkb, kOps}));
    // sk_msg's short-write pick-up is by the writing thread (gw_resync):
    // commit abe3cac8706b, Linux 5.8
    v.push_back(Helper("bpf_get_current_pid_tgid", BPF_FUNC_get_current_pid_tgid, "5.8", {kMsg}, "",
                       "sk_msg_pid_tgid"));
    // optional: the pid and command in events (gw_have_pid, gw_have_comm):
    // every program type from 6.10 (commit eb166e522c77) and 6.16 (ee971630f20f)
    v.push_back(Helper("bpf_get_current_pid_tgid", BPF_FUNC_get_current_pid_tgid, "6.10", {kSkb, kSkSkb, kOps}, kTask));
    v.push_back(Helper("bpf_get_current_comm", BPF_FUNC_get_current_comm, "6.16", {kSkb, kMsg, kSkSkb, kOps}, kTask));
    // optional: the reset of predating connections (gw_reset_predating)
    v.push_back(P({"iter_tcp", "BPF tcp iterator (iter/tcp)", "5.9", true, kReset}, Kind::kBtfFunc, {}, 0, "bpf_iter_tcp"));
    v.push_back(P({"sock_destroy", "bpf_sock_destroy kfunc", "6.5", true, kReset}, Kind::kBtfFunc, {}, 0,
                  "bpf_sock_destroy"));
    return v;
  }();
  return probes;
}

bool HasMember(const btf* b, const char* type, const char* member) {
  const int id = btf__find_by_name_kind(b, type, BTF_KIND_STRUCT);
  if (id < 0) return false;
  const btf_type* t = btf__type_by_id(b, id);
  const btf_member* m = btf_members(t);
  for (int i = 0; i < btf_vlen(t); i++, m++) {
    const char* n = btf__name_by_offset(b, m->name_off);
    if (n && std::strcmp(n, member) == 0) return true;
  }
  return false;
}

bool Has(const Probe& p, const btf* vmlinux) {
  switch (p.kind) {
    case Kind::kBtf:
      return vmlinux != nullptr;
    case Kind::kProgType:
      return libbpf_probe_bpf_prog_type(p.progs[0], nullptr) == 1;
    case Kind::kMapType:
      return libbpf_probe_bpf_map_type(static_cast<bpf_map_type>(p.id), nullptr) == 1;
    case Kind::kHelper:
      for (bpf_prog_type t : p.progs)
        if (libbpf_probe_bpf_helper(t, static_cast<bpf_func_id>(p.id), nullptr) != 1) return false;
      return true;
    case Kind::kBtfFunc:
      return vmlinux && btf__find_by_name_kind(vmlinux, p.name, BTF_KIND_FUNC) >= 0;
    case Kind::kBtfStruct:
      return vmlinux && btf__find_by_name_kind(vmlinux, p.name, BTF_KIND_STRUCT) >= 0;
    case Kind::kBtfMember:
      return vmlinux && HasMember(vmlinux, p.name, p.member);
  }
  return false;
}

std::vector<int> VersionParts(const std::string& v) {
  std::vector<int> out;
  std::stringstream ss(v);
  for (std::string part; std::getline(ss, part, '.');) out.push_back(std::atoi(part.c_str()));
  return out;
}

std::string Release() {
  utsname u{};
  return uname(&u) == 0 ? u.release : "unknown";
}

}  // namespace

const std::vector<Facility>& Facilities() {
  static const std::vector<Facility> all = [] {
    std::vector<Facility> v;
    for (const auto& p : Probes()) v.push_back(p.f);
    return v;
  }();
  return all;
}

std::vector<Facility> KernelProbe::MissingRequired() const {
  std::vector<Facility> v;
  for (const auto& f : missing)
    if (!f.optional) v.push_back(f);
  return v;
}

std::vector<Facility> KernelProbe::MissingOptional(const std::string& loses) const {
  std::vector<Facility> v;
  for (const auto& f : missing)
    if (f.optional && f.loses == loses) v.push_back(f);
  return v;
}

bool KernelProbe::Has(const std::string& key) const {
  for (const auto& f : missing)
    if (f.key == key) return false;
  return true;
}

std::vector<std::string> PretendMissing() {
  std::vector<std::string> keys;
  const char* env = std::getenv("GRPCWALL_KERNEL_PRETEND");
  if (!env || !*env) return keys;
  std::stringstream ss(env);
  for (std::string k; std::getline(ss, k, ',');) {
    if (k.empty()) continue;
    if (k == "bpf_sock_destroy") k = "sock_destroy";
    bool known = false;
    for (const auto& f : Facilities()) known = known || f.key == k;
    if (!known) {
      std::string all;
      for (const auto& f : Facilities()) all += (all.empty() ? "" : ", ") + f.key;
      throw InputError("GRPCWALL_KERNEL_PRETEND: '" + k + "' is not a kernel facility grpcwall checks; it checks " + all);
    }
    keys.push_back(k);
  }
  return keys;
}

KernelProbe ProbeKernel(bool required_too) {
  KernelProbe k;
  k.release = Release();
  const std::vector<std::string> pretend = PretendMissing();
  // libbpf prints why it cannot load vmlinux BTF; the refusal says it
  std::unique_ptr<btf, decltype(&btf__free)> vmlinux(btf__load_vmlinux_btf(), &btf__free);
  for (const auto& p : Probes()) {
    if (!required_too && !p.f.optional) continue;
    bool faked = false;
    for (const auto& key : pretend) faked = faked || key == p.f.key;
    // without BTF at all, what is looked up in it is not said missing too
    // (a 6.x kernel built without CONFIG_DEBUG_INFO_BTF would be told 5.15)
    const bool in_btf = p.kind == Kind::kBtfFunc || p.kind == Kind::kBtfStruct || p.kind == Kind::kBtfMember;
    if (!faked && !vmlinux && in_btf && !p.f.optional) continue;
    if (faked || !Has(p, vmlinux.get())) k.missing.push_back(p.f);
  }
  return k;
}

bool VersionAtLeast(const std::string& have, const std::string& want) {
  const auto h = VersionParts(have), w = VersionParts(want);
  for (size_t i = 0; i < std::max(h.size(), w.size()); i++) {
    const int a = i < h.size() ? h[i] : 0, b = i < w.size() ? w[i] : 0;
    if (a != b) return a > b;
  }
  return true;
}

std::string RefusalMessage(const std::string& release, const std::vector<Facility>& missing) {
  std::string newest = "0", list;
  for (size_t i = 0; i < missing.size(); i++) {
    const auto& f = missing[i];
    if (!VersionAtLeast(newest, f.since)) newest = f.since;
    list += (i == 0 ? "" : i + 1 == missing.size() ? " and " : ", ") + f.what + " (Linux " + f.since + ")";
  }
  return "needs Linux " + newest + " or later for " + list + " (this kernel is " + release +
         "): nothing was attached";
}

namespace {
// "A (Linux x) and B (Linux y)"
std::string WhatAndSince(const std::vector<Facility>& missing) {
  std::string list;
  for (size_t i = 0; i < missing.size(); i++)
    list += (i == 0 ? "" : " and ") + missing[i].what + " (Linux " + missing[i].since + ")";
  return list;
}
}  // namespace

std::string NoResetMessage(const std::string& release, const std::vector<Facility>& missing) {
  return "this kernel (" + release + ") has no " + WhatAndSince(missing) +
         ", so grpcwall cannot reset connections that predate attach or the policy apply that polices them. "
         "Such a connection is NOT reset and its RPCs are NOT walked, nor do they pass unchecked: from the first "
         "payload byte it sends after that, the egress guard holds its bytes back (at a protected server, the ingress guard drops what its "
         "caller sends), so nothing of it reaches the peer and its RPCs hang until the client's deadline or TCP "
         "gives up. Restart those clients and servers yourself: they reconnect under policy. Nor can detach "
         "reset the connections a protected server accepted, and listeners on a protected port made outside "
         "the service's cgroup are not named";
}

std::string NoTaskMessage(const std::string& release, const std::vector<Facility>& missing) {
  return "this kernel (" + release + ") has no " + WhatAndSince(missing) +
         ": events (monitor, the fallback's log) carry no pid or command of the process that sent the RPC; "
         "enforcement is the same";
}

std::string ResetUnavailable(const std::string& pin_dir) {
  if (access(MapPin(pin_dir, "prog_reset").c_str(), F_OK) == 0) return "";
  const KernelProbe k = ProbeKernel(false);
  return k.CanResetPredating() ? "" : NoResetMessage(k.release, k.MissingOptional());
}

nlohmann::json FeaturesJson(const std::string& pin_dir) {
  const KernelProbe k = ProbeKernel(false);
  nlohmann::json missing = nlohmann::json::array();
  for (const auto& f : k.missing) missing.push_back(f.key);
  return {{"reset_predating", access(MapPin(pin_dir, "prog_reset").c_str(), F_OK) == 0},
          {"task_in_events", k.MissingOptional(kTask).empty()},
          {"kernel", k.release},
          {"missing", missing}};
}

std::string FeaturesText(const std::string& pin_dir) {
  const bool pinned = access(MapPin(pin_dir, "prog_reset").c_str(), F_OK) == 0;
  const KernelProbe k = ProbeKernel(false);
  std::string s = "  kernel:       " + k.release + ": ";
  if (!k.MissingOptional(kTask).empty()) {
    std::string list;
    for (const auto& f : k.MissingOptional(kTask)) list += (list.empty() ? "" : ", ") + f.key + " (Linux " + f.since + ")";
    s += "events carry no pid or command (no " + list + "); ";
  }
  if (pinned) return s + "connections that predate attach or a policy are reset\n";
  if (k.CanResetPredating()) return s + "predating connections are not reset: prog_reset is not pinned (attach again)\n";
  std::string list;
  for (const auto& f : k.MissingOptional()) list += (list.empty() ? "" : ", ") + f.key + " (Linux " + f.since + ")";
  return s + "predating connections cannot be reset on this kernel (no " + list +
         "): they are not policed, their payload is held back; restart them\n";
}

}  // namespace gw
