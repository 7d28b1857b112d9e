// The schema evaluator, private to the validator (see sync/schema_internal.h):
// one pass of Validate over a document. The core and the scalar keywords are
// in schema_evaluate.cc, objects and arrays in schema_evaluate_containers.cc,
// allOf/anyOf/oneOf/not/if and the explanations of a failed anyOf/oneOf in
// schema_evaluate_combinators.cc.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sync/json.h"
#include "sync/schema.h"
#include "sync/schema_internal.h"

namespace gitopsd::schema::internal {

// One Validate pass. In checking mode it answers valid/invalid as fast as it
// can; in collecting mode it also records why, with paths and messages.
class Evaluator {
 public:
  Evaluator(std::vector<Violation>* out, size_t limit) : out_(out), limit_(limit) {}

  bool Eval(const Node& n, const json::Value& v);
  const std::string& error() const { return error_; }

 private:
  struct Segment {
    std::string_view key;
    size_t index = 0;
    bool is_index = false;
  };
  class PathScope {
   public:
    PathScope(Evaluator& e, std::string_view key) : e_(e) { e_.path_.push_back({key, 0, false}); }
    PathScope(Evaluator& e, size_t index) : e_(e) { e_.path_.push_back({{}, index, true}); }
    ~PathScope() { e_.path_.pop_back(); }

   private:
    Evaluator& e_;
  };

  bool collecting() const { return out_ != nullptr; }
  bool full() const { return out_ && out_->size() >= limit_; }
  // Whether to evaluate further keywords after one that gave `ok`.
  bool Continue(bool ok) const { return ok || (collecting() && !full()); }
  bool Test(const Node& n, const json::Value& v);
  std::vector<Violation> CollectInto(const Node& n, const json::Value& v);

  template <class Message>
  bool Reject(const json::Value& v, const char* keyword, Message&& message) {
    return RejectAt(v.offset(), keyword, std::forward<Message>(message));
  }
  template <class Message>
  bool RejectAt(uint32_t offset, const char* keyword, Message&& message) {
    if (collecting() && !full()) out_->push_back({offset, Pointer(), keyword, message()});
    return false;
  }
  std::string Pointer() const;
  std::string Subject() const;  // `"spec.steps[0].kind"`, or `the document`

  bool EvalKeywords(const Node& n, const json::Value& v);
  bool CheckValue(const Node& n, const json::Value& v);
  bool CheckObject(const Node& n, const json::Value& v);
  bool CheckMembers(const Node& n, const json::Value& v);
  bool CheckListedProperties(const Node& n, const json::Value& v);
  bool CheckPropertyNames(const Node& n, const json::Value& v);
  bool CheckDependencies(const Node& n, const json::Value& v);
  bool CheckArray(const Node& n, const json::Value& v);
  bool CheckItems(const Node& n, const json::Value& v);
  bool CheckString(const Node& n, const json::Value& v);
  bool CheckNumber(const Node& n, const json::Value& v);
  bool CheckCombinators(const Node& n, const json::Value& v);
  bool CheckOneOf(const Node& n, const json::Value& v);
  bool IfHolds(const Node& n, const json::Value& v);
  bool ExplainNoMatch(const std::vector<Branch>& branches, const json::Value& v, const char* keyword);
  bool ExplainDiscriminator(const std::vector<const Branch*>& branches, const json::Value& v,
                            const char* keyword);
  void ReportBestBranch(const std::vector<const Branch*>& branches, const json::Value& v);
  std::string UnknownKeyMessage(const Node& n, std::string_view key) const;

  std::vector<Violation>* out_;  // null: checking only
  size_t limit_;
  std::vector<Segment> path_;
  std::string subject_override_;  // set while checking property names
  int depth_ = 0;
  std::string error_;
};

}  // namespace gitopsd::schema::internal
