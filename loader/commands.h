// Each subcommand registers itself on the app (one file per subcommand).
#pragma once
#include <sys/types.h>

#include <CLI/CLI.hpp>
#include <string>

namespace gw {
void RegisterAttach(CLI::App& app);
void RegisterDetach(CLI::App& app);
void RegisterPolicy(CLI::App& app);
void RegisterStatus(CLI::App& app);
void RegisterMonitor(CLI::App& app);
void RegisterProxy(CLI::App& app);

// The fallback helper of a pin dir (cmd_proxy.cpp).
std::string DefaultProxyLog(const std::string& pin_dir);
pid_t RunningProxy(const std::string& pin_dir);  // 0: none
void StartProxy(const std::string& pin_dir);     // returns once it serves
bool StopProxy(const std::string& pin_dir);      // false: none was running

// Detaches and removes everything under pin_dir (detach, and a failed
// first attach rolling back). Returns false if there was nothing.
bool RemovePinDir(const std::string& pin_dir);

// Adds the common --pin-dir option.
CLI::Option* AddPinDir(CLI::App* sub, std::string* pin_dir);
}  // namespace gw
