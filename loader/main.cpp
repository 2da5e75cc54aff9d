// grpcwall: gRPC method firewall in the kernel. See README.md.
#include <bpf/libbpf.h>

#include <cstdio>
#include <iostream>

#include "commands.h"
#include "error.h"
#include "system.h"

namespace gw {

CLI::Option* AddPinDir(CLI::App* sub, std::string* pin_dir) {
  *pin_dir = kDefaultPinDir;
  return sub->add_option("--pin-dir", *pin_dir, "bpffs directory of grpcwall's own for its pinned programs and maps\n"
                         "(below the bpffs root; attach makes it, detach removes it)")
      ->capture_default_str();
}

}  // namespace gw

static int LibbpfPrint(enum libbpf_print_level level, const char* fmt, va_list ap) {
  if (level == LIBBPF_DEBUG && !getenv("GRPCWALL_DEBUG")) return 0;
  if (level == LIBBPF_INFO && !getenv("GRPCWALL_DEBUG")) return 0;
  return vfprintf(stderr, fmt, ap);
}

int main(int argc, char** argv) {
  CLI::App app{
      "grpcwall: allow or deny gRPC methods per workload, decided in the kernel at the socket.\n"
      "Workloads are identified by cgroup v2; policy is YAML (see policies/cloudcity.yaml).\n\n"
      "  sudo grpcwall attach policies/cloudcity.yaml   load, pin, attach, apply, exit\n"
      "  grpcwall policy check policies/cloudcity.yaml  validate a policy (no root needed)\n"
      "  sudo grpcwall status                          what is live and what it counted\n"
      "  sudo grpcwall monitor                         one line per deny/audit verdict\n"
      "  sudo grpcwall detach                          remove everything attach created\n\n"
      "Exit codes: 0 ok, 1 bad input (policy, arguments, a pin dir that is not grpcwall's), 2 system error;\n"
      "3: proxy found nothing attached at its pin dir; 130/143: monitor stopped by SIGINT/SIGTERM before its --count.",
      "grpcwall"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  libbpf_set_print(LibbpfPrint);

  gw::RegisterAttach(app);
  gw::RegisterDetach(app);
  gw::RegisterPolicy(app);
  gw::RegisterStatus(app);
  gw::RegisterMonitor(app);
  gw::RegisterProxy(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return gw::kBadInput;
  } catch (const gw::Error& e) {
    std::cerr << "grpcwall: " << e.what() << "\n";
    return e.code();
  } catch (const std::exception& e) {
    std::cerr << "grpcwall: " << e.what() << "\n";
    return gw::kSystem;
  }
  return gw::kOk;
}
