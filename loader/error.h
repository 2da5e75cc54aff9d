// Errors carry their exit code: 1 bad input, 2 system error, 3 (proxy)
// nothing attached to serve, 130/143 stopped by SIGINT/SIGTERM. main() maps them to the exit code in one place.
#pragma once
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace gw {

// 128 + signal: a command stopped by a signal before it was done, as a
// shell reports a process that signal ended.
// kNotAttached: `proxy` found nothing attached at its pin dir (or it was
// detached while it started): grpcwall-proxy.service does not restart on it
// (RestartPreventExitStatus=3), as it does on every other exit.
enum ExitCode { kOk = 0, kBadInput = 1, kSystem = 2, kNotAttached = 3, kSigint = 128 + 2, kSigterm = 128 + 15 };

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& msg) : std::runtime_error(msg), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

inline Error InputError(const std::string& msg) { return Error(kBadInput, msg); }

// "what: strerror(err)" plus a hint for the usual permission problem.
inline Error SysError(const std::string& what, int err) {
  std::string msg = what + ": " + std::strerror(err);
  if (err == EPERM || err == EACCES) msg += " (run as root)";
  return Error(kSystem, msg);
}

}  // namespace gw
