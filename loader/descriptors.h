// `policy check --descriptor-set FILE`: the services and methods a protobuf
// FileDescriptorSet defines (`protoc -o FILE --include_imports ...`), and the
// policy entries that name something it does not define.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "policy.h"

namespace gw {

struct Descriptors {
  std::map<std::string, std::set<std::string>> services;  // "package.Service" -> method names
};

// Reads FILE; a file that is not a FileDescriptorSet: InputError naming it.
Descriptors LoadDescriptorSet(const std::string& path);
// The same from bytes (`what` names them in errors).
Descriptors ParseDescriptorSet(const std::string& bytes, const std::string& what);

struct DescriptorWarning {
  int line = 0;
  std::string entry;    // as written after presets expanded: /pkg.Svc/Method or /pkg.Svc/*
  std::string message;  // "FILE:LINE: warning: ..."
};

// Every allow/deny entry naming a service, or a method of a service, that
// the descriptors do not define. `*` and presets are not checked (a preset
// names what a server may or may not expose).
std::vector<DescriptorWarning> CheckAgainst(const Policy& p, const Descriptors& d, const std::string& ds_file);

}  // namespace gw
