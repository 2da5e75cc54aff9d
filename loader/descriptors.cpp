#include "descriptors.h"

#include <fstream>
#include <sstream>

#include "error.h"

namespace gw {
namespace {

// The protobuf wire format, as far as FileDescriptorSet needs it: fields are
// (number, wire type); LEN fields are read, the others skipped.
class Wire {
 public:
  Wire(const std::string& b, size_t from, size_t to, const std::string& what) : b_(b), at_(from), end_(to), what_(what) {}
  bool More() const { return at_ < end_; }

  // The next field: its number, and for a LEN field its bytes [*from, *to).
  // Other wire types are skipped (*from == *to == npos).
  uint32_t Next(size_t* from, size_t* to) {
    uint64_t key = Varint();
    uint32_t type = key & 7;
    *from = *to = std::string::npos;
    switch (type) {
      case 0: Varint(); break;
      case 1: Skip(8); break;
      case 5: Skip(4); break;
      case 2: {
        uint64_t n = Varint();
        if (n > end_ - at_) Bad("a field runs past its message");
        *from = at_;
        *to = at_ + n;
        at_ += n;
        break;
      }
      default: Bad("wire type " + std::to_string(type) + " (groups are not in descriptors)");
    }
    return static_cast<uint32_t>(key >> 3);
  }

 private:
  uint64_t Varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (at_ >= end_) Bad("a number runs past the end");
      uint8_t c = static_cast<uint8_t>(b_[at_++]);
      v |= uint64_t(c & 0x7f) << shift;
      if (!(c & 0x80)) return v;
    }
    Bad("a number longer than 10 bytes");
    return 0;
  }
  void Skip(size_t n) {
    if (n > end_ - at_) Bad("a field runs past its message");
    at_ += n;
  }
  [[noreturn]] void Bad(const std::string& why) const {
    throw InputError(what_ + ": not a protobuf FileDescriptorSet (" + why +
                     "); make one with: protoc -o FILE --include_imports your.proto");
  }

  const std::string& b_;
  size_t at_, end_;
  const std::string& what_;
};

// FileDescriptorProto: 2 package, 6 service; ServiceDescriptorProto: 1 name,
// 2 method; MethodDescriptorProto: 1 name.
void File(const std::string& b, size_t from, size_t to, const std::string& what, Descriptors* d) {
  std::string package;
  std::vector<std::pair<size_t, size_t>> services;
  Wire w(b, from, to, what);
  while (w.More()) {
    size_t f, t;
    uint32_t n = w.Next(&f, &t);
    if (f == std::string::npos) continue;
    if (n == 2) package = b.substr(f, t - f);
    if (n == 6) services.emplace_back(f, t);
  }
  for (const auto& [sf, st] : services) {
    std::string name;
    std::set<std::string> methods;
    Wire s(b, sf, st, what);
    while (s.More()) {
      size_t f, t;
      uint32_t n = s.Next(&f, &t);
      if (f == std::string::npos) continue;
      if (n == 1) name = b.substr(f, t - f);
      if (n != 2) continue;
      Wire m(b, f, t, what);
      while (m.More()) {
        size_t mf, mt;
        if (m.Next(&mf, &mt) == 1 && mf != std::string::npos) methods.insert(b.substr(mf, mt - mf));
      }
    }
    std::string full = package.empty() ? name : package + "." + name;
    d->services[full].insert(methods.begin(), methods.end());
  }
}

}  // namespace

Descriptors ParseDescriptorSet(const std::string& bytes, const std::string& what) {
  Descriptors d;
  Wire w(bytes, 0, bytes.size(), what);
  size_t files = 0;
  while (w.More()) {
    size_t f, t;
    uint32_t n = w.Next(&f, &t);
    if (n != 1 || f == std::string::npos)
      throw InputError(what + ": not a protobuf FileDescriptorSet (field " + std::to_string(n) +
                       " at the top); make one with: protoc -o FILE --include_imports your.proto");
    File(bytes, f, t, what, &d);
    files++;
  }
  if (!files)
    throw InputError(what + ": an empty FileDescriptorSet; make one with: protoc -o FILE --include_imports your.proto");
  return d;
}

Descriptors LoadDescriptorSet(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot read the descriptor set");
  std::ostringstream s;
  s << in.rdbuf();
  return ParseDescriptorSet(s.str(), path);
}

std::vector<DescriptorWarning> CheckAgainst(const Policy& p, const Descriptors& d, const std::string& ds_file) {
  std::vector<DescriptorWarning> out;
  std::set<const void*> seen;  // a list shared by YAML aliases is reported once
  for (const auto& r : p.rules) {
    for (const EntryList* list : {&r.allow, &r.deny}) {
      if (list->empty() || !seen.insert(list->id()).second) continue;
      for (const auto& e : *list) {
        if (e.pattern == "*" || !e.preset.empty()) continue;
        size_t second = e.pattern.find('/', 1);
        std::string svc = e.pattern.substr(1, second - 1), method = e.pattern.substr(second + 1);
        auto it = d.services.find(svc);
        std::string why;
        if (it == d.services.end()) {
          why = "service " + svc + " is not defined in " + ds_file;
        } else if (method != "*" && !it->second.count(method)) {
          std::string has;
          size_t shown = 0;
          for (const auto& m : it->second) {
            if (shown++ == 8) {
              has += ", ...";
              break;
            }
            has += (has.empty() ? "" : ", ") + m;
          }
          why = "method " + method + " is not a method of " + svc + " in " + ds_file + " (it has: " +
                (has.empty() ? "none" : has) + ")";
        }
        if (why.empty()) continue;
        out.push_back({e.line, e.pattern,
                       p.file + ":" + std::to_string(e.line) + ": warning: '" + e.pattern + "': " + why +
                           ": it can never match an RPC of that server"});
      }
    }
  }
  return out;
}

}  // namespace gw
