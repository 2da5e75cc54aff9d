// The fallback helper of a pin dir, for the other subcommands (cmd_proxy.cpp).
#pragma once
#include <sys/types.h>

#include <string>

extern "C" {
#include "userspace.h"
#include "fallback.h"
}

namespace gw {

std::string DefaultProxyLog(const std::string& pin_dir);
// What the helper last published (zero if nothing is pinned), and whether
// the pid in it is a live grpcwall process.
gw_fb_stats ReadFallbackStats(const std::string& pin_dir);
pid_t RunningProxy(const std::string& pin_dir);  // 0: none
// Pool slots not free (claimed by a diverted connection, or to recycle).
uint32_t BusyPoolSlots(const std::string& pin_dir);
// Policed connections in gw_sockhash now (a socket leaves it at close),
// the helper's pool sockets not counted.
uint64_t TrackedConns(const std::string& pin_dir);
void StartProxy(const std::string& pin_dir);     // returns once it serves
bool StopProxy(const std::string& pin_dir);      // false: none was running

}  // namespace gw
