// Evaluates the `${...}` language (sync/expressions.h) over the strings of a
// node: `${args.X}`, `${refs.<ref>.<path>}` (array indexes as path segments:
// `refs.svc.ports.0.dns`) and `${fn.name(...)}` for every function the model
// accepts.
//
// The contract a caller can rely on:
//  - A string that is exactly one `${...}` yields that expression's JSON
//    value (a number, a boolean, an object...); any other string with
//    expressions yields a string, each value spliced in as text (strings
//    as they are, numbers as spelled, objects and arrays as compact JSON).
//    "\${" stays a literal "${".
//  - At the top level every arg and ref must resolve, or it is an error;
//    inside a function call an unresolved value counts as false (grammar
//    §1.5), so `${fn.if(refs.build.id, 'built', 'none')}` is valid.
//  - Truthiness: false, null, 0, "", "false" and "0" are false; anything
//    else is true (arguments are usually strings such as "true"/"false").
//  - The dry run: refs named in Scope::pending_refs belong to nodes that run
//    earlier but whose outputs are not known yet. Any path under them
//    resolves to a placeholder, and a function of a placeholder is a
//    placeholder, so a dry run checks that everything *can* resolve without
//    guessing outputs.
//  - Nothing here throws; no global state. Thread-safe.
//
// The second half reads a flow's node tree: what a node resolves to before
// it runs, and the dry run of a whole flow.
#pragma once
#include <chrono>
#include <expected>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "sync/json.h"

namespace gitopsd::runner {

// Ref name → the JSON it exposes (a node's response data, a trigger's
// {branch, sha, pullRequestId, repoUrl}).
using RefMap = std::map<std::string, json::Value, std::less<>>;
using NameSet = std::set<std::string, std::less<>>;

struct Scope {
  const json::Value* args = nullptr;  // an object: argument name → value
  const RefMap* refs = nullptr;       // outputs known now
  // Dry run only: refs that will have run before this node; outputs unknown.
  const NameSet* pending_refs = nullptr;
  // For messages only: every node ref of the flow, so that a ref to a later
  // node reads "runs later" instead of "does not exist".
  const NameSet* all_refs = nullptr;
  // fn.date's "now"; the system clock when unset (tests pin it).
  std::optional<std::chrono::system_clock::time_point> now;
  // fn.randomSecret's source of randomness: returns a uniformly random
  // index below its argument. std::random_device when unset.
  std::function<size_t(size_t)> random;
};

// One expression that could not be evaluated.
struct EvalError {
  std::string where;       // the JSON path of the string: "spec.spec.steps[2].spec.jobId"
  std::string expression;  // the `${...}` text, or the whole string for a parse error
  std::string message;     // what is wrong and what to do
  std::string ToString() const;  // "<where>: <expression>: <message>"
};

// Evaluates one string. `where` names it in errors.
std::expected<json::Value, EvalError> EvaluateString(std::string_view text, const Scope& scope,
                                                     std::string_view where = "");

// Resolves every string inside `value` (objects and arrays, recursively);
// `where` is the JSON path of `value`, extended with ".key" and "[i]" for
// messages. Every error is appended to *errors (all of them, not only the
// first); a string that failed is kept as written.
json::Value Resolve(const json::Value& value, const Scope& scope, const std::string& where,
                    std::vector<EvalError>* errors);

bool IsTruthy(const json::Value& v);

// A number, or a string that spells one ("30", "0.5"); booleans count as
// 1 and 0. nullopt otherwise.
std::optional<double> ToNumber(const json::Value& v);

// The value as text, the way an interpolation splices it into a string.
std::string ToText(const json::Value& v);

// ---- node trees: a flow's `spec` -----------------------------------------

std::string NodeKind(const json::Value& node);  // "" when missing
std::string NodeRef(const json::Value& node);   // "" when none
// A Workflow node's steps array; nullptr for any other node.
const json::Value* WorkflowSteps(const json::Value& node);
// The refs of a node and of all its descendants.
void CollectNodeRefs(const json::Value& node, NameSet& out);
// The flow's declared "arguments" (their defaults) overlaid with `overrides`.
json::Value MergeArgs(const json::Value& body, const json::Value& overrides);
// {"app": {"branch": ...}} as a RefMap.
RefMap RefsFromTriggers(const json::Value& trigger_refs);

// A node with every member resolved but "kind", "ref" and a Workflow's
// spec.steps (steps resolve when they run). `where` is the node's JSON path
// ("spec.spec.steps[2]").
json::Value ResolveNode(const json::Value& node, const Scope& scope, const std::string& where,
                        std::vector<EvalError>* errors);

// The dry run, before anything executes: every node's expressions must be
// able to resolve from `args` (overrides of the flow's "arguments"), the
// trigger refs, and the refs of nodes that run before it (their outputs are
// placeholders: a sequential step sees its earlier siblings' subtrees, a
// parallel one none of its siblings'). Also checks the tree's shape
// (objects with a kind; workflows with steps and a known type). Every
// problem is returned, each naming the JSON path ("spec.spec.steps[2].spec.jobId")
// and the expression. With `exists`, every resource a node names by a
// literal name (references.h) must exist or be declared by a node of the
// flow: `job "x" does not exist; declare it in a Template`. Empty when the
// flow can run.
using ResourceExists = std::function<bool(std::string_view kind, const std::string& name)>;
std::vector<EvalError> DryRun(const json::Value& body, const json::Value& args, const json::Value& trigger_refs,
                              const ResourceExists& exists = {});

}  // namespace gitopsd::runner
