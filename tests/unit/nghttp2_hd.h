// libnghttp2's HPACK codec for the unit tests: its inflater is the full
// decoder the model (and what the server decodes after a deny rewrite) is
// checked against; its deflater writes header blocks as a real peer would.
#pragma once
#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <string>
#include <utility>
#include <vector>

class Inflater {
 public:
  Inflater() { EXPECT_EQ(nghttp2_hd_inflate_new(&inf_), 0); }
  ~Inflater() { nghttp2_hd_inflate_del(inf_); }
  void SetMax(size_t n) { nghttp2_hd_inflate_change_table_size(inf_, n); }
  // Decodes one block; returns false on error. Fills the :path values.
  bool Inflate(const unsigned char* p, size_t n, std::vector<std::string>* paths) {
    for (;;) {
      nghttp2_nv nv;
      int flags = 0;
      ssize_t rv = nghttp2_hd_inflate_hd2(inf_, &nv, &flags, p, n, 1);
      if (rv < 0) return false;
      p += rv;
      n -= rv;
      if (flags & NGHTTP2_HD_INFLATE_EMIT) {
        std::string name(reinterpret_cast<char*>(nv.name), nv.namelen);
        if (name == ":path") paths->emplace_back(reinterpret_cast<char*>(nv.value), nv.valuelen);
      }
      if (flags & NGHTTP2_HD_INFLATE_FINAL) {
        nghttp2_hd_inflate_end_headers(inf_);
        return true;
      }
      if (rv == 0 && n == 0) return false;
    }
  }
  size_t TableSize() const { return nghttp2_hd_inflate_get_dynamic_table_size(inf_); }

 private:
  nghttp2_hd_inflater* inf_ = nullptr;
};


using Headers = std::vector<std::pair<std::string, std::string>>;

class Deflater {
 public:
  explicit Deflater(size_t max = 4096) { EXPECT_EQ(nghttp2_hd_deflate_new(&def_, max), 0); }
  ~Deflater() { nghttp2_hd_deflate_del(def_); }
  void ChangeTableSize(size_t n) { nghttp2_hd_deflate_change_table_size(def_, n); }
  // One header block; fields whose no_index[i] is set are never indexed.
  std::vector<uint8_t> Deflate(const Headers& hs, const std::vector<bool>& no_index = {}) {
    std::vector<nghttp2_nv> nva;
    for (size_t i = 0; i < hs.size(); i++) {
      auto& [n, v] = hs[i];
      uint8_t flags = i < no_index.size() && no_index[i] ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE;
      nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                     reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(), flags});
    }
    std::vector<uint8_t> buf(nghttp2_hd_deflate_bound(def_, nva.data(), nva.size()));
    ssize_t n = nghttp2_hd_deflate_hd(def_, buf.data(), buf.size(), nva.data(), nva.size());
    EXPECT_GT(n, 0);
    buf.resize(n > 0 ? size_t(n) : 0);
    return buf;
  }

 private:
  nghttp2_hd_deflater* def_ = nullptr;
};
