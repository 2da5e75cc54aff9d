#include "yaml_doc.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <sstream>

#include "error.h"

namespace gw {

const YamlNode* YamlNode::Get(const std::string& key) const {
  for (const auto& kv : entries)
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

  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override {
    YamlNode n;
    n.line = mark.line + 1;
    Add(std::move(n));
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override {
    Fail(mark.line + 1, "YAML aliases (*name) are not allowed in a policy: write the value out");
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t,
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
    }
    Add(std::move(n));
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Open(mark, YamlNode::kSequence);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    Open(mark, YamlNode::kMap);
  }
  void OnMapEnd() override {
    if (stack_.back().pending_key) Fail(stack_.back().node.line, "a mapping key has no value");
    Close();
  }

 private:
  struct Frame {
    YamlNode node;
    bool pending_key = false;  // kMap: a key was read, its value comes next
    YamlNode key;
  };

  void Open(const YAML::Mark& mark, YamlNode::Kind kind) {
    if (static_cast<int>(stack_.size()) >= kYamlMaxDepth)
      Fail(mark.line + 1, "nesting deeper than " + std::to_string(kYamlMaxDepth) + " levels");
    Frame f;
    f.node.kind = kind;
    f.node.line = mark.line + 1;
    stack_.push_back(std::move(f));
  }

  void Close() {
    YamlNode n = std::move(stack_.back().node);
    stack_.pop_back();
    Add(std::move(n));
  }

  void Add(YamlNode n) {
    if (stack_.empty()) {
      root = std::move(n);
      return;
    }
    Frame& f = stack_.back();
    if (f.node.kind == YamlNode::kSequence) {
      f.node.items.push_back(std::move(n));
      return;
    }
    if (!f.pending_key) {
      if (n.kind != YamlNode::kScalar || n.quoted)
        Fail(n.line, "a mapping key must be a plain string" +
                         (n.kind == YamlNode::kScalar ? " ('" + n.text + "' is quoted)" : std::string()));
      for (const auto& kv : f.node.entries)
        if (kv.first.text == n.text)
          Fail(n.line, "duplicate key '" + n.text + "' (first at line " + std::to_string(kv.first.line) +
                           "): YAML would keep one of them silently, so say it once");
      f.key = std::move(n);
      f.pending_key = true;
      return;
    }
    f.node.entries.emplace_back(std::move(f.key), std::move(n));
    f.pending_key = false;
  }

  std::string file_;
  std::vector<Frame> stack_;
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
