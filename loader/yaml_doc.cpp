#include "yaml_doc.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <map>
#include <sstream>

#include "error.h"

namespace gw {

namespace {
const YamlNode::Children kNoChildren;
}

const std::vector<YamlNode>& YamlNode::items() const { return (children ? *children : kNoChildren).items; }

const std::vector<std::pair<YamlNode, YamlNode>>& YamlNode::entries() const {
  return (children ? *children : kNoChildren).entries;
}

const YamlNode* YamlNode::Get(const std::string& key) const {
  for (const auto& kv : entries())
    if (kv.first.text == key) return &kv.second;
  return nullptr;
}

namespace {

class Builder : public YAML::EventHandler {
 public:
  explicit Builder(std::string file) : file_(std::move(file)) {}

  YamlNode root;
  bool done = false;

  [[noreturn]] void Fail(int line, const std::string& msg) const {
    throw InputError(file_ + ":" + std::to_string(line) + ": " + msg);
  }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override { done = true; }

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    YamlNode n;
    n.line = mark.line + 1;
    Add(std::move(n), anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    const int line = mark.line + 1;
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) Fail(line, "alias of an anchor that is not defined (yet)");
    Count(line, it->second.nodes, it->second.bytes);  // before the copy: a bomb stops here
    YamlNode n = it->second;  // a scalar's text, or a handle on the shared children
    Add(std::move(n), 0, false);
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    YamlNode n;
    n.line = mark.line + 1;
    if (value.find('\0') != std::string::npos) Fail(n.line, "a string holds a NUL byte");
    n.quoted = tag == "!";  // yaml-cpp: "!" for quoted scalars, "?" for plain ones
    const bool null_word = value == "~" || value == "null" || value == "Null" || value == "NULL";
    if (!n.quoted && (value.empty() || null_word)) {
      n.kind = YamlNode::kNull;
    } else {
      n.kind = YamlNode::kScalar;
      n.text = value;
      n.bytes = value.size();
    }
    Add(std::move(n), anchor);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, YamlNode::kSequence, anchor);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(mark, YamlNode::kMap, anchor);
  }
  void OnMapEnd() override {
    if (stack_.back().pending_key) Fail(stack_.back().node.line, "a mapping key has no value");
    Close();
  }

 private:
  struct Frame {
    YamlNode node;
    std::shared_ptr<YamlNode::Children> children = std::make_shared<YamlNode::Children>();  // node's, while open
    YAML::anchor_t anchor = 0;
    bool pending_key = false;  // kMap: a key was read, its value comes next
    YamlNode key;
    std::map<std::string, int> keys;  // kMap: key -> line
  };

  void Count(int line, size_t nodes, size_t bytes) {
    total_ += nodes;
    total_bytes_ += bytes;
    if (total_ > kYamlMaxNodes)
      Fail(line, "the document expands (aliases included) to more than " + std::to_string(kYamlMaxNodes) +
                     " nodes: write it with fewer aliases");
    if (total_bytes_ > kYamlMaxBytes)
      Fail(line, "the document expands (aliases included) to more than " + std::to_string(kYamlMaxBytes >> 20) +
                     " MiB of strings: write it with fewer aliases");
  }

  void Open(const YAML::Mark& mark, YamlNode::Kind kind, YAML::anchor_t anchor) {
    if (static_cast<int>(stack_.size()) >= kYamlMaxDepth)
      Fail(mark.line + 1, "nesting deeper than " + std::to_string(kYamlMaxDepth) + " levels");
    Count(mark.line + 1, 1, 0);
    Frame f;
    f.node.kind = kind;
    f.node.line = mark.line + 1;
    f.anchor = anchor;
    stack_.push_back(std::move(f));
  }

  void Close() {
    YamlNode n = std::move(stack_.back().node);
    n.children = std::move(stack_.back().children);
    YAML::anchor_t anchor = stack_.back().anchor;
    stack_.pop_back();
    Add(std::move(n), anchor, false);
  }

  // Adds a finished node to its parent; `fresh`: a scalar or null read now
  // (counted here; collections are counted as they open, aliases before
  // their copy). An anchored node is kept for its aliases.
  void Add(YamlNode n, YAML::anchor_t anchor, bool fresh = true) {
    if (fresh) Count(n.line, 1, n.bytes);
    if (anchor) {  // the copy kept for aliases counts too
      Count(n.line, n.nodes, n.bytes);
      anchors_[anchor] = n;  // shares n's children
    }
    if (!stack_.empty()) {
      stack_.back().node.nodes += n.nodes;
      stack_.back().node.bytes += n.bytes;
    }
    if (stack_.empty()) {
      root = std::move(n);
      return;
    }
    Frame& f = stack_.back();
    if (f.node.kind == YamlNode::kSequence) {
      f.children->items.push_back(std::move(n));
      return;
    }
    if (!f.pending_key) {
      if (n.kind != YamlNode::kScalar || n.quoted)
        Fail(n.line, "a mapping key must be a plain string" +
                         (n.kind == YamlNode::kScalar ? " ('" + n.text + "' is quoted)" : std::string()));
      auto [it, fresh_key] = f.keys.emplace(n.text, n.line);
      if (!fresh_key)
        Fail(n.line, "duplicate key '" + n.text + "' (first at line " + std::to_string(it->second) +
                         "): YAML would keep one of them silently, so say it once");
      f.key = std::move(n);
      f.pending_key = true;
      return;
    }
    f.children->entries.emplace_back(std::move(f.key), std::move(n));
    f.pending_key = false;
  }

  std::string file_;
  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, YamlNode> anchors_;
  size_t total_ = 0;
  size_t total_bytes_ = 0;
};

}  // namespace

YamlNode ParseYaml(const std::string& text, const std::string& file) {
  std::istringstream in(text);
  Builder b(file);
  try {
    YAML::Parser parser(in);
    if (!parser.HandleNextDocument(b)) return YamlNode{};
    YAML::Parser* p = &parser;
    struct Second : YAML::EventHandler {
      int line = 0;
      void OnDocumentStart(const YAML::Mark& m) override { line = line ? line : m.line + 1; }
      void OnDocumentEnd() override {}
      void OnNull(const YAML::Mark& m, YAML::anchor_t) override { line = line ? line : m.line + 1; }
      void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { line = line ? line : m.line + 1; }
      void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t, const std::string&) override {
        line = line ? line : m.line + 1;
      }
      void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                           YAML::EmitterStyle::value) override {
        line = line ? line : m.line + 1;
      }
      void OnSequenceEnd() override {}
      void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
        line = line ? line : m.line + 1;
      }
      void OnMapEnd() override {}
    } second;
    // a second document would be dropped by a reader that takes the first
    if (p->HandleNextDocument(second))
      b.Fail(second.line ? second.line : 1,
             "a second YAML document ('---'): a policy is one document, put everything in it");
  } catch (const YAML::ParserException& e) {
    b.Fail(e.mark.line + 1, "YAML syntax error: " + e.msg);
  } catch (const YAML::Exception& e) {
    b.Fail(e.mark.line + 1, std::string("YAML error: ") + e.msg);
  }
  return std::move(b.root);
}

}  // namespace gw
