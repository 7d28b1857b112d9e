// Forge webhooks: is a delivery really from the forge, and what does it point
// at? gitopsd answers POST /hooks/github, /hooks/gitlab and /hooks/gitea with
// these functions, in this order: VerifyDelivery (401 when it fails), then
// ParseDelivery, then NamesRepository against each configured trigger.
//
// What callers can rely on:
//  - A webhook only says WHERE to look: which repository, which branch or
//    pull request, opened or closed. Commit ids in a payload are hints
//    (`head_sha_hint`); what runs is always what Git says when fetched.
//  - VerifyDelivery compares in constant time (every byte, no early exit,
//    a length mismatch costs the same loop) and refuses an empty secret.
//    Its errors name the header and what was wrong with it, never the secret
//    or the expected signature, so they can be logged as they are.
//  - Delivery ids let the daemon drop a delivery it has already handled
//    (forge retries, "redeliver" buttons). They are NOT covered by any
//    signature: someone who captured a body can resend it under a fresh id.
//    That is harmless by design (a replay only makes gitopsd look at Git
//    again), but a replay store that must catch it should key on the body's
//    digest as well.
//  - ParseEvent never fails on an event it does not handle: that is kIgnored
//    with a reason, and its body is not even parsed. It fails on malformed
//    JSON and on a handled event that lacks a field gitopsd needs, and the
//    error names the field ("pull_request.head.sha").
//  - Everything here is pure: no I/O, no clock, no exceptions, thread-safe.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sync/status.h"

namespace gitopsd::triggers {

enum class Forge { kGitHub, kGitLab, kGitea };

// "github", "gitlab", "gitea": the last segment of the /hooks/<name> path.
const char* ForgeName(Forge forge);
// "GitHub", "GitLab", "Gitea": for messages.
const char* ForgeTitle(Forge forge);
Result<Forge> ForgeFromName(std::string_view name);

// A request's header fields, looked up case-insensitively as HTTP requires.
// A name added twice keeps its first value (as Poco's HTTPRequest::get does).
class Headers {
 public:
  Headers() = default;
  Headers(std::initializer_list<std::pair<std::string, std::string>> fields);

  void Add(std::string name, std::string value);
  // nullptr when the request has no such field.
  const std::string* Find(std::string_view name) const;

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

// Checks that `body` (the raw request body, byte for byte) was sent by the
// forge that knows `secret`:
//  - GitHub: X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>.
//  - Gitea:  X-Gitea-Signature: <hex HMAC-SHA256(secret, body)>; when that
//    field is absent or empty, X-Hub-Signature-256 as for GitHub (Gitea and
//    Forgejo send both). A present, non-empty X-Gitea-Signature that is wrong
//    is not rescued by the other field.
//  - GitLab: X-Gitlab-Token: <secret>, compared in constant time.
Status VerifyDelivery(Forge forge, const Headers& headers, std::string_view body,
                      std::string_view secret);

// The forge's id for this delivery, "" when it sent none:
//  - GitHub: X-GitHub-Delivery. Gitea: X-Gitea-Delivery.
//  - GitLab: Idempotency-Key (GitLab 17.4+, the same across retries of one
//    event), else X-Gitlab-Event-UUID (14.8+; differs between retries, and
//    webhooks triggered by an earlier webhook share their trigger's value).
std::string DeliveryId(Forge forge, const Headers& headers);

// The header naming the event: X-GitHub-Event, X-Gitlab-Event, X-Gitea-Event.
const char* EventHeaderName(Forge forge);

struct ForgeEvent {
  enum class Kind { kPush, kPullRequest, kPing, kIgnored };
  enum class PrAction {
    kNone,            // not a pull request event
    kOpened,
    kReopened,
    kUpdated,         // new commits on the source branch, or a new target branch
    kReadyForReview,  // was a draft, is not any more
    kClosed,          // closed without merging
    kMerged,
    kOther,           // labels, reviewers, title, approvals, back to draft...
  };

  Forge forge = Forge::kGitHub;
  Kind kind = Kind::kIgnored;
  std::string event_name;   // the event header as sent ("push", "Merge Request Hook")
  std::string delivery_id;  // see DeliveryId; "" from ParseEvent
  // Every URL the payload gives for the repository the webhook belongs to
  // (for a pull request: the target repository, never a fork's).
  std::vector<std::string> repo_urls;
  std::string head_sha_hint;  // push: the new tip; pull request: its head

  // kPush. `branch` is "feature/x" for refs/heads/feature/x.
  std::string branch;
  bool branch_deleted = false;

  // kPullRequest. `number` is what people type (#42, !7): GitLab's iid.
  int64_t number = 0;
  PrAction action = PrAction::kNone;
  std::string action_name;    // the forge's own word ("synchronize", "update")
  std::string source_branch;  // in the source repository, which may be a fork
  std::string target_branch;
  std::string head_ref;       // in the target repository: refs/pull/42/head,
                              // refs/merge-requests/7/head (works for forks)
  bool draft = false;
  bool from_fork = false;

  // kIgnored: why ("tag push refs/tags/v1.2.0", "event \"issues\"").
  std::string ignored_reason;
};

const char* KindName(ForgeEvent::Kind kind);
const char* PrActionName(ForgeEvent::PrAction action);

// Parses a payload given its event name (the EventHeaderName value).
Result<ForgeEvent> ParseEvent(Forge forge, std::string_view event_name, std::string_view body);
// ParseEvent with the event name and delivery id read from the headers; a
// missing event header is an error naming it.
Result<ForgeEvent> ParseDelivery(Forge forge, const Headers& headers, std::string_view body);

// True when both URLs name the same repository, whatever the transport:
// https://github.com/acme/shop, http://GitHub.com/acme/shop.git/,
// ssh://git@github.com:22/acme/shop.git and git@github.com:acme/shop.git all
// match. Scheme, user info, port, a trailing ".git" or "/" and the case of
// host and path are ignored (the forges treat owner and repository names
// case-insensitively). Never matches when either URL lacks a host or a path
// (local paths, file:// URLs).
bool SameRepository(std::string_view configured_url, std::string_view payload_url);
// SameRepository against any of the event's repo_urls.
bool NamesRepository(const ForgeEvent& event, std::string_view configured_url);

// Lowercase hex HMAC-SHA256 (RFC 2104 over FIPS 180-4), as the forges sign.
std::string HmacSha256Hex(std::string_view key, std::string_view data);
// Compares every byte of the longer input whatever the differences; inputs of
// different lengths are unequal.
bool ConstantTimeEqual(std::string_view a, std::string_view b);

}  // namespace gitopsd::triggers
