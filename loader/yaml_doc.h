// A strict YAML reader for policies: one document of maps, sequences and
// scalars with their lines, built from yaml-cpp's parser events. What YAML
// allows but a policy must not have is an error with its line, never a
// silent choice: a duplicate key at any level, a second document, a key that
// is not a plain string, a NUL byte in a string, nesting deeper than
// kYamlMaxDepth. Aliases are expanded, within a budget of kYamlMaxNodes
// nodes and kYamlMaxBytes string bytes for the whole document (every copy
// counts: the anchored value kept for its aliases and each alias's copy),
// so no alias can multiply work or memory past it: an "alias bomb" fails
// at the anchor or alias that would cross it, before the copy is made.
// (The budget counts copies as if made; an alias of a sequence or mapping
// shares the anchored node's children instead: 10,000 aliases of a list of
// 100 methods are 10,000 handles on one list, not a million strings.)
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace gw {

struct YamlNode {
  enum Kind { kNull, kScalar, kSequence, kMap };
  Kind kind = kNull;
  int line = 0;           // 1-based
  std::string text;       // kScalar
  bool quoted = false;    // kScalar written in quotes (not a plain scalar)
  size_t nodes = 1;       // this node and all below it
  size_t bytes = 0;       // string bytes in this node and all below it

  struct Children {
    std::vector<YamlNode> items;                          // kSequence
    std::vector<std::pair<YamlNode, YamlNode>> entries;   // kMap, in file order, keys unique
  };
  // kSequence and kMap; immutable once read, shared by an anchored node and
  // its aliases (so the same pointer means the same children)
  std::shared_ptr<const Children> children;

  const std::vector<YamlNode>& items() const;
  const std::vector<std::pair<YamlNode, YamlNode>>& entries() const;
  // The value of map key `key`, or nullptr.
  const YamlNode* Get(const std::string& key) const;
};

constexpr int kYamlMaxDepth = 32;
constexpr size_t kYamlMaxNodes = 2000000;  // 10,000 rules x 100 aliased methods is 1.05M
constexpr size_t kYamlMaxBytes = 64 << 20; // string bytes, aliases and anchors included

// Parses `text`; throws InputError("FILE:LINE: ...") on bad input. An empty
// file gives a kNull node.
YamlNode ParseYaml(const std::string& text, const std::string& file);

}  // namespace gw
