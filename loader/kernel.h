// What the running kernel offers grpcwall's BPF object: probed before attach
// loads anything (libbpf's probes and the kernel's BTF, not the version
// number: distribution kernels backport), so that a kernel without a
// required facility is refused with the version that has it, and one
// without an optional one is attached without it, saying what that costs.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gw {

// A kernel facility the BPF object uses.
struct Facility {
  std::string key;    // its name in messages and in GRPCWALL_KERNEL_PRETEND
  std::string what;   // in words, for messages
  std::string since;  // the first mainline Linux version that has it ("6.5")
  bool optional;      // attached without it (what is lost: `loses`)
  std::string loses;  // optional: kReset (no reset of predating connections, prog_reset)
                      // or kTask (events carry no pid or command)
};
inline constexpr const char* kReset = "reset";
inline constexpr const char* kTask = "task";

// Every facility grpcwall checks, required ones first (pure: no probing).
const std::vector<Facility>& Facilities();

// The running kernel, probed.
struct KernelProbe {
  std::string release;                // uname -r
  std::vector<Facility> missing;      // what it lacks (or GRPCWALL_KERNEL_PRETEND says it lacks)
  std::vector<Facility> MissingRequired() const;
  std::vector<Facility> MissingOptional(const std::string& loses = kReset) const;
  // gw_reset_predating can be loaded (the tcp iterator and bpf_sock_destroy)
  bool CanResetPredating() const { return MissingOptional(kReset).empty(); }
  // socket programs may call bpf_get_current_pid_tgid / bpf_get_current_comm
  // (gw_have_pid / gw_have_comm in the BPF object's rodata)
  bool Has(const std::string& key) const;
};

// GRPCWALL_KERNEL_PRETEND: facility keys (comma separated) to treat as
// missing whatever the probe finds, to see what attach does on an older
// kernel. Read here only. Throws InputError for a key that is not one.
std::vector<std::string> PretendMissing();

// Probes the running kernel (`required_too` false: the optional facilities
// only, for the commands after attach). Throws only for a
// GRPCWALL_KERNEL_PRETEND it cannot read.
KernelProbe ProbeKernel(bool required_too = true);

// Pure: "a.b" >= "c.d".
bool VersionAtLeast(const std::string& have, const std::string& want);
// Pure: the refusal ("needs Linux 6.16 or later for ...") for a kernel
// without `missing` (required facilities):
// the newest version they need, each with its own.
std::string RefusalMessage(const std::string& release, const std::vector<Facility>& missing);
// Pure: what a kernel without `missing` (optional facilities) costs, for a
// warning.
std::string NoResetMessage(const std::string& release, const std::vector<Facility>& missing);
// Pure: what a kernel without `missing` (kTask facilities) costs.
std::string NoTaskMessage(const std::string& release, const std::vector<Facility>& missing);

// For the commands after attach: why connections cannot be reset under
// `pin_dir` ("" if they can: prog_reset is pinned, or the kernel has what
// it needs, in which case a missing pin is an error of its own).
std::string ResetUnavailable(const std::string& pin_dir);

// For status: {"reset_predating": bool, "kernel": release, "missing": [keys]}
// and the same as a line of text.
nlohmann::json FeaturesJson(const std::string& pin_dir);
std::string FeaturesText(const std::string& pin_dir);

}  // namespace gw
