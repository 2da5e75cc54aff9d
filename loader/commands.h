// Each subcommand registers itself on the app (one file per subcommand).
#pragma once
#include <CLI/CLI.hpp>

namespace gw {
void RegisterAttach(CLI::App& app);
void RegisterDetach(CLI::App& app);
void RegisterPolicy(CLI::App& app);
void RegisterStatus(CLI::App& app);
void RegisterMonitor(CLI::App& app);
void RegisterProxy(CLI::App& app);

// Adds the common --pin-dir option.
CLI::Option* AddPinDir(CLI::App* sub, std::string* pin_dir);
}  // namespace gw
