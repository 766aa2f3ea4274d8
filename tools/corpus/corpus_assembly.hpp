// tools/corpus/corpus_assembly.hpp — from rendered documents to one domain's train and valid text.
//
// The rules, all deterministic (same documents in the same order -> byte-identical output, on
// every platform: the hash is FNV-1a 64, never std::hash):
//
//   paragraphs   a document is split on blank lines; trailing blanks are removed from each line.
//   dedup        each paragraph is hashed after whitespace normalisation (runs of spaces, tabs and
//                newlines -> one space, ends trimmed); a paragraph whose hash was already kept in
//                this domain is dropped (as the paper does for its French data). The first
//                occurrence, in document order, is the one kept.
//   split        by document, never inside one: bucket = fnv1a64(name) % 100, valid when
//                bucket < valid_percent. Equal names get equal splits in every domain, so the
//                French and English versions of `man1/ls.1` land on the same side. When no
//                document falls in valid, the train document with the smallest (bucket, hash,
//                name) is moved there (and symmetrically for an empty train), so both are
//                non-empty as soon as a domain has two documents.
//   cap          the paragraph that would take train text past train_cap_bytes closes the train
//                split and ends the domain: a domain is the prefix of its ordered documents up to
//                the cap, and its valid text holds the valid-bucket documents of that prefix.
//                Valid text has its own cap, valid_cap_bytes (once closed, later valid documents
//                are skipped). Paragraphs are never cut. 0 means no cap.
//
//   across      (optional, for a corpus whose domains must not share text) a set of paragraph
//                hashes to exclude, such as every paragraph already kept by another domain or
//                used by a benchmark: a paragraph whose hash is in it is dropped and counted
//                apart (paragraphs_elsewhere).
//   filter       (optional) a predicate on the paragraph; those it rejects are dropped and
//                counted (paragraphs_filtered): the prose corpus drops untranslated English
//                paragraphs from French and German text this way (corpus/language_filter.hpp).
//
// Output format of each split: every kept paragraph followed by one blank line ("\n\n").
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_set>
#include <vector>

#include "nr/core/error.hpp"
#include "nr/core/hash.hpp"

namespace nr {


// Runs of ASCII whitespace (space, tab, CR, LF, FF, VT) become one space; both ends trimmed.
inline std::string normalize_whitespace(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool gap = false;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      gap = true;
    } else {
      if (gap && !out.empty()) out += ' ';
      gap = false;
      out += c;
    }
  }
  return out;
}

// The paragraphs of a text: blocks separated by one or more blank lines (lines holding only
// whitespace count as blank). Trailing blanks are removed from every line; each paragraph is
// returned without its final newline.
inline std::vector<std::string> split_paragraphs(std::string_view text) {
  std::vector<std::string> paragraphs;
  std::string current;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) line.remove_suffix(1);
    bool blank = true;
    for (char c : line) blank = blank && (c == ' ' || c == '\t' || c == '\f' || c == '\v');
    if (blank) {
      if (!current.empty()) paragraphs.push_back(std::move(current));
      current.clear();
    } else {
      if (!current.empty()) current += '\n';
      current += line;
    }
  }
  if (!current.empty()) paragraphs.push_back(std::move(current));
  return paragraphs;
}

// The hash used for paragraph deduplication.
inline uint64_t paragraph_hash(std::string_view paragraph) { return fnv1a64(normalize_whitespace(paragraph)); }

// The document's split bucket in [0, 100).
inline int split_bucket(std::string_view document_name) { return static_cast<int>(fnv1a64(document_name) % 100); }

inline bool goes_to_valid(std::string_view document_name, int valid_percent) {
  return split_bucket(document_name) < valid_percent;
}

struct AssemblyLimits {
  int64_t train_cap_bytes = 0;  // 0: no cap
  int64_t valid_cap_bytes = 0;  // 0: no cap
  int valid_percent = 5;        // share of documents (by name hash) that go to valid
};

// One document as it ends up in a split: the paragraphs that survived dedup and the cap.
struct AssembledDocument {
  std::string name;    // document name (decides the split)
  std::string source;  // where it came from (package or directory), for the listing
  std::vector<std::string> paragraphs;
  int64_t bytes = 0;   // bytes it adds to its split file (each paragraph + "\n\n")
};

struct AssemblyStats {
  int64_t documents_seen = 0;          // documents passed to add()
  int64_t documents_empty = 0;         // nothing left after dedup
  int64_t documents_skipped_by_cap = 0;
  int64_t documents_moved = 0;         // moved to fill an empty split
  int64_t paragraphs_kept = 0;
  int64_t paragraphs_duplicate = 0;    // dropped as duplicates
  int64_t paragraphs_elsewhere = 0;    // dropped: in the excluded set (kept by another domain, ...)
  int64_t paragraphs_filtered = 0;     // dropped by the paragraph filter
  bool train_cap_reached = false, valid_cap_reached = false;
};

struct AssembledDomain {
  std::vector<AssembledDocument> train, valid;
  AssemblyStats stats;

  static int64_t bytes_of(const std::vector<AssembledDocument>& docs) {
    int64_t n = 0;
    for (const AssembledDocument& d : docs) n += d.bytes;
    return n;
  }
  static std::string text_of(const std::vector<AssembledDocument>& docs) {
    std::string s;
    s.reserve(static_cast<size_t>(bytes_of(docs)));
    for (const AssembledDocument& d : docs)
      for (const std::string& p : d.paragraphs) {
        s += p;
        s += "\n\n";
      }
    return s;
  }
  int64_t train_bytes() const { return bytes_of(train); }
  int64_t valid_bytes() const { return bytes_of(valid); }
  std::string train_text() const { return text_of(train); }
  std::string valid_text() const { return text_of(valid); }
};

// Streams documents (in their final order) into one domain: dedup, split, cap. See the file
// comment for the rules.
class DomainAssembler {
 public:
  explicit DomainAssembler(AssemblyLimits limits) : limits_(limits) {
    if (limits.valid_percent < 0 || limits.valid_percent > 100)
      throw ValueError("valid_percent must lie in [0, 100], got " + std::to_string(limits.valid_percent));
    if (limits.train_cap_bytes < 0 || limits.valid_cap_bytes < 0) throw ValueError("corpus caps must be >= 0 bytes");
  }

  // Paragraphs whose hash (paragraph_hash) is in `*hashes` are dropped; the set must outlive
  // the assembler. nullptr (the default) excludes nothing.
  void exclude(const std::unordered_set<uint64_t>* hashes) { excluded_ = hashes; }

  // Paragraphs for which keep(paragraph) is false are dropped. Empty (the default): all kept.
  void filter(std::function<bool(std::string_view)> keep) { keep_ = std::move(keep); }

  // True when the domain is complete: the train split is closed by its cap (or, when every
  // document goes to valid, the valid split is).
  bool full() const { return train_.closed || (valid_.closed && limits_.valid_percent >= 100); }

  void add(std::string_view name, std::string_view text, std::string_view source = {}) {
    ++out_.stats.documents_seen;
    const bool valid = goes_to_valid(name, limits_.valid_percent);
    Split& split = valid ? valid_ : train_;
    if (split.closed) {
      ++out_.stats.documents_skipped_by_cap;
      return;
    }
    const int64_t cap = valid ? limits_.valid_cap_bytes : limits_.train_cap_bytes;
    AssembledDocument doc{std::string(name), std::string(source), {}, 0};
    for (std::string& p : split_paragraphs(text)) {
      const uint64_t h = paragraph_hash(p);
      if (seen_.count(h) != 0) {
        ++out_.stats.paragraphs_duplicate;
        continue;
      }
      if (excluded_ != nullptr && excluded_->count(h) != 0) {
        ++out_.stats.paragraphs_elsewhere;
        continue;
      }
      if (keep_ && !keep_(p)) {
        ++out_.stats.paragraphs_filtered;
        continue;
      }
      const auto cost = static_cast<int64_t>(p.size()) + 2;
      if (cap > 0 && split.bytes + cost > cap) {
        split.closed = true;
        (valid ? out_.stats.valid_cap_reached : out_.stats.train_cap_reached) = true;
        break;
      }
      seen_.insert(h);
      split.bytes += cost;
      doc.bytes += cost;
      doc.paragraphs.push_back(std::move(p));
      ++out_.stats.paragraphs_kept;
    }
    if (doc.paragraphs.empty()) {
      ++out_.stats.documents_empty;
      return;
    }
    (valid ? out_.valid : out_.train).push_back(std::move(doc));
  }

  // Ends the stream: fills an empty split from the other one when that one has two documents or
  // more, and returns the domain. The assembler must not be used afterwards.
  AssembledDomain finish() {
    if (out_.valid.empty() && out_.train.size() >= 2) move_one(out_.train, out_.valid, limits_.valid_cap_bytes, false);
    if (out_.train.empty() && out_.valid.size() >= 2) move_one(out_.valid, out_.train, limits_.train_cap_bytes, true);
    return std::move(out_);
  }

 private:
  struct Split {
    int64_t bytes = 0;
    bool closed = false;
  };

  // Moves the document closest to the other split's side: the smallest (bucket, hash, name) when
  // filling valid, the largest when filling train. Paragraphs beyond `cap` are dropped (at
  // least one is kept).
  void move_one(std::vector<AssembledDocument>& from, std::vector<AssembledDocument>& to, int64_t cap, bool largest) {
    auto key = [](const AssembledDocument& d) { return std::make_tuple(split_bucket(d.name), fnv1a64(d.name), d.name); };
    auto it = std::min_element(from.begin(), from.end(), [&](const AssembledDocument& a, const AssembledDocument& b) {
      return largest ? key(b) < key(a) : key(a) < key(b);
    });
    AssembledDocument doc = std::move(*it);
    from.erase(it);
    int64_t bytes = 0;
    size_t keep = 0;
    for (; keep < doc.paragraphs.size(); ++keep) {
      const auto cost = static_cast<int64_t>(doc.paragraphs[keep].size()) + 2;
      if (keep > 0 && cap > 0 && bytes + cost > cap) break;
      bytes += cost;
    }
    out_.stats.paragraphs_kept -= static_cast<int64_t>(doc.paragraphs.size() - keep);
    doc.paragraphs.resize(keep);
    doc.bytes = bytes;
    to.push_back(std::move(doc));
    ++out_.stats.documents_moved;
  }

  AssemblyLimits limits_;
  Split train_, valid_;
  std::unordered_set<uint64_t> seen_;
  const std::unordered_set<uint64_t>* excluded_ = nullptr;
  std::function<bool(std::string_view)> keep_;
  AssembledDomain out_;
};

// Adds the hash of every paragraph of `text` (split_paragraphs, paragraph_hash) to `hashes`:
// how a corpus builder records what a domain or a benchmark already holds.
inline void add_paragraph_hashes(std::string_view text, std::unordered_set<uint64_t>& hashes) {
  for (const std::string& p : split_paragraphs(text)) hashes.insert(paragraph_hash(p));
}

// Assembles a whole list of (name, text) documents at once (see DomainAssembler).
struct NamedText {
  std::string name, text;
};
inline AssembledDomain assemble_domain(const std::vector<NamedText>& documents, const AssemblyLimits& limits) {
  DomainAssembler a(limits);
  for (const NamedText& d : documents) {
    if (a.full()) break;
    a.add(d.name, d.text);
  }
  return a.finish();
}

}  // namespace nr
