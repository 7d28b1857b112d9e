// Forge webhooks: signatures, delivery ids, payloads and repository URLs.
//
// The payloads under tests/triggers/payloads/<forge>/ were written for these
// tests to each forge's published layout, trimmed to the fields gitopsd
// reads plus a few neighbours; each group of tests names the document.
// Signatures are computed here with Poco's HMACEngine directly, so a test
// fails if forge.cc signs differently from a plain HMAC-SHA256.
#include "daemon/triggers/forge.h"

#include <Poco/DigestEngine.h>
#include <Poco/HMACEngine.h>
#include <Poco/SHA2Engine.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace gitopsd::triggers {
namespace {

using Kind = ForgeEvent::Kind;
using PrAction = ForgeEvent::PrAction;

constexpr std::string_view kSecret = "whsec-7f3a9c1e-shared-with-the-forge";

std::string ReadPayload(const std::string& relative) {
  const std::string path = std::string(GITOPSD_SOURCE_DIR) + "/tests/triggers/payloads/" + relative;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Poco 1.11's SHA2Engine lacks the constants HMACEngine<> needs.
class PocoSha256 : public Poco::SHA2Engine {
 public:
  enum { BLOCK_SIZE = 64, DIGEST_SIZE = 32 };
  PocoSha256() : Poco::SHA2Engine(Poco::SHA2Engine::SHA_256) {}
};

// The hex signature a forge sends for `body`.
std::string Sign(std::string_view secret, std::string_view body) {
  Poco::HMACEngine<PocoSha256> hmac(std::string{secret});
  hmac.update(body.data(), static_cast<unsigned>(body.size()));
  return Poco::DigestEngine::digestToHex(hmac.digest());
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

ForgeEvent Parsed(Forge forge, std::string_view event, const std::string& file) {
  Result<ForgeEvent> e = ParseEvent(forge, event, ReadPayload(file));
  EXPECT_TRUE(e.has_value()) << file << ": " << (e ? "" : e.error().message);
  return e ? *e : ForgeEvent{};
}

std::string ErrorOf(const Status& s) { return s ? "(accepted)" : s.error().message; }

// ---- HMAC itself -----------------------------------------------------------

TEST(HmacTest, MatchesRfc4231TestCase2) {
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(HmacTest, MatchesRfc4231TestCase6WhereTheKeyIsLongerThanABlock) {
  EXPECT_EQ(HmacSha256Hex(std::string(131, '\xaa'),
                          "Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

// GitHub docs, "Validating webhook deliveries" > "Testing the webhook payload validation".
TEST(HmacTest, MatchesTheExampleGitHubPublishes) {
  EXPECT_EQ(HmacSha256Hex("It's a Secret to Everybody", "Hello, World!"),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
}

TEST(HmacTest, AgreesWithPocosHmacEngineOnAWholePayload) {
  const std::string body = ReadPayload("github/push.json");
  EXPECT_EQ(HmacSha256Hex(kSecret, body), Sign(kSecret, body));
}

TEST(ConstantTimeEqualTest, EqualOnlyWhenTheLengthAndEveryByteMatch) {
  EXPECT_TRUE(ConstantTimeEqual("token", "token"));
  EXPECT_TRUE(ConstantTimeEqual("", ""));
  EXPECT_FALSE(ConstantTimeEqual("token", "tokeN"));
  EXPECT_FALSE(ConstantTimeEqual("token", "toke"));
  EXPECT_FALSE(ConstantTimeEqual("toke", "token"));
  EXPECT_FALSE(ConstantTimeEqual("", "token"));
  EXPECT_FALSE(ConstantTimeEqual(std::string_view("ab\0", 3), "ab"));
}

// ---- Signatures: GitHub ("Validating webhook deliveries") -----------------

TEST(GitHubSignatureTest, AcceptsTheBodyItSigned) {
  const std::string body = ReadPayload("github/push.json");
  Headers headers{{"x-hub-signature-256", "sha256=" + Sign(kSecret, body)}};
  Status s = VerifyDelivery(Forge::kGitHub, headers, body, kSecret);
  EXPECT_TRUE(s) << ErrorOf(s);
}

TEST(GitHubSignatureTest, AcceptsUppercaseHex) {
  const std::string body = ReadPayload("github/push.json");
  Headers headers{{"X-Hub-Signature-256", "sha256=" + Upper(Sign(kSecret, body))}};
  EXPECT_TRUE(VerifyDelivery(Forge::kGitHub, headers, body, kSecret));
}

TEST(GitHubSignatureTest, RefusesABodyChangedAfterSigning) {
  const std::string body = ReadPayload("github/push.json");
  Headers headers{{"X-Hub-Signature-256", "sha256=" + Sign(kSecret, body)}};
  std::string changed = body;
  changed.replace(changed.find("refs/heads/main"), 15, "refs/heads/prod");
  Status s = VerifyDelivery(Forge::kGitHub, headers, changed, kSecret);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("X-Hub-Signature-256 does not match"), std::string::npos)
      << s.error().message;
}

TEST(GitHubSignatureTest, RefusesASignatureMadeWithAnotherSecret) {
  const std::string body = ReadPayload("github/push.json");
  Headers headers{{"X-Hub-Signature-256", "sha256=" + Sign("someone-elses-secret", body)}};
  EXPECT_FALSE(VerifyDelivery(Forge::kGitHub, headers, body, kSecret));
}

TEST(GitHubSignatureTest, NamesTheMissingHeader) {
  const std::string body = ReadPayload("github/push.json");
  for (const Headers& headers : {Headers{}, Headers{{"X-Hub-Signature-256", ""}},
                                 Headers{{"X-Hub-Signature", "sha1=" + std::string(40, 'a')}}}) {
    Status s = VerifyDelivery(Forge::kGitHub, headers, body, kSecret);
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().message.find("missing X-Hub-Signature-256"), std::string::npos)
        << s.error().message;
  }
}

TEST(GitHubSignatureTest, SaysWhenTheSignatureIsMalformed) {
  const std::string body = ReadPayload("github/push.json");
  const std::string good = Sign(kSecret, body);
  for (const std::string& value : {good,                        // no "sha256=" prefix
                                   "sha1=" + good,              // wrong algorithm
                                   "sha256=" + good.substr(1),  // 63 digits
                                   "sha256=" + good + "00",     // 66 digits
                                   "sha256=" + std::string(64, 'g'), std::string("sha256=")}) {
    Status s =
        VerifyDelivery(Forge::kGitHub, Headers{{"X-Hub-Signature-256", value}}, body, kSecret);
    ASSERT_FALSE(s) << value;
    EXPECT_NE(s.error().message.find("malformed X-Hub-Signature-256"), std::string::npos)
        << value << ": " << s.error().message;
  }
}

TEST(SignatureTest, AnEmptySecretIsRefusedEvenWhenTheSignatureMatchesIt) {
  const std::string body = ReadPayload("github/push.json");
  Headers headers{{"X-Hub-Signature-256", "sha256=" + Sign("", body)},
                  {"X-Gitea-Signature", Sign("", body)},
                  {"X-Gitlab-Token", ""}};
  for (Forge forge : {Forge::kGitHub, Forge::kGitea, Forge::kGitLab}) {
    Status s = VerifyDelivery(forge, headers, body, "");
    ASSERT_FALSE(s) << ForgeName(forge);
    EXPECT_NE(s.error().message.find("no webhook secret is configured"), std::string::npos)
        << s.error().message;
  }
}

TEST(SignatureTest, ErrorsNameNeitherTheSecretNorTheExpectedSignature) {
  const std::string body = ReadPayload("github/push.json");
  const std::string expected = Sign(kSecret, body);
  std::vector<std::string> messages = {
      ErrorOf(VerifyDelivery(Forge::kGitHub,
                             Headers{{"X-Hub-Signature-256", "sha256=" + Sign("x", body)}}, body,
                             kSecret)),
      ErrorOf(VerifyDelivery(Forge::kGitea, Headers{{"X-Gitea-Signature", Sign("x", body)}}, body,
                             kSecret)),
      ErrorOf(VerifyDelivery(Forge::kGitLab, Headers{{"X-Gitlab-Token", "guess"}}, body, kSecret)),
      ErrorOf(VerifyDelivery(Forge::kGitHub, Headers{}, body, kSecret))};
  for (const std::string& message : messages) {
    EXPECT_EQ(message.find(kSecret), std::string::npos) << message;
    EXPECT_EQ(message.find(expected), std::string::npos) << message;
  }
}

// ---- Signatures: Gitea (docs.gitea.com "Webhooks"; Gitea's
// services/webhook/deliver.go sends X-Gitea-Signature and X-Hub-Signature-256)

TEST(GiteaSignatureTest, AcceptsXGiteaSignature) {
  const std::string body = ReadPayload("gitea/push.json");
  Headers headers{{"X-Gitea-Signature", Sign(kSecret, body)}};
  EXPECT_TRUE(VerifyDelivery(Forge::kGitea, headers, body, kSecret));
}

TEST(GiteaSignatureTest, FallsBackToXHubSignature256WhenXGiteaSignatureIsAbsentOrEmpty) {
  const std::string body = ReadPayload("gitea/push.json");
  const std::string hub = "sha256=" + Sign(kSecret, body);
  EXPECT_TRUE(VerifyDelivery(Forge::kGitea, Headers{{"X-Hub-Signature-256", hub}}, body, kSecret));
  EXPECT_TRUE(VerifyDelivery(Forge::kGitea,
                             Headers{{"X-Gitea-Signature", ""}, {"X-Hub-Signature-256", hub}}, body,
                             kSecret));
}

TEST(GiteaSignatureTest, AWrongXGiteaSignatureIsNotRescuedByAGoodXHubSignature256) {
  const std::string body = ReadPayload("gitea/push.json");
  Headers headers{{"X-Gitea-Signature", Sign("someone-elses-secret", body)},
                  {"X-Hub-Signature-256", "sha256=" + Sign(kSecret, body)}};
  Status s = VerifyDelivery(Forge::kGitea, headers, body, kSecret);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("X-Gitea-Signature does not match"), std::string::npos)
      << s.error().message;
}

TEST(GiteaSignatureTest, NamesBothHeadersWhenNeitherCarriesASignature) {
  const std::string body = ReadPayload("gitea/push.json");
  // What Gitea sends for a webhook without a secret.
  Headers headers{{"X-Gitea-Signature", ""}, {"X-Hub-Signature-256", ""}};
  Status s = VerifyDelivery(Forge::kGitea, headers, body, kSecret);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("missing X-Gitea-Signature and X-Hub-Signature-256"),
            std::string::npos)
      << s.error().message;
}

TEST(GiteaSignatureTest, XGiteaSignatureIsBareHex) {
  const std::string body = ReadPayload("gitea/push.json");
  Headers headers{{"X-Gitea-Signature", "sha256=" + Sign(kSecret, body)}};
  Status s = VerifyDelivery(Forge::kGitea, headers, body, kSecret);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("malformed X-Gitea-Signature"), std::string::npos)
      << s.error().message;
}

// ---- Signatures: GitLab ("Webhooks" > secret token) ------------------------

TEST(GitLabTokenTest, AcceptsTheSecretToken) {
  Headers headers{{"x-gitlab-token", std::string(kSecret)}};
  EXPECT_TRUE(VerifyDelivery(Forge::kGitLab, headers, ReadPayload("gitlab/push.json"), kSecret));
}

TEST(GitLabTokenTest, RefusesAnyOtherToken) {
  const std::string secret(kSecret);
  for (const std::string& token :
       {secret.substr(0, secret.size() - 1), secret + "x", Upper(secret), std::string("whsec")}) {
    Status s = VerifyDelivery(Forge::kGitLab, Headers{{"X-Gitlab-Token", token}}, "{}", kSecret);
    ASSERT_FALSE(s) << token;
    EXPECT_NE(s.error().message.find("X-Gitlab-Token does not match"), std::string::npos)
        << s.error().message;
  }
}

TEST(GitLabTokenTest, NamesTheMissingHeader) {
  Status s =
      VerifyDelivery(Forge::kGitLab, Headers{{"X-Gitlab-Event", "Push Hook"}}, "{}", kSecret);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("missing X-Gitlab-Token"), std::string::npos)
      << s.error().message;
}

// ---- Delivery ids ------------------------------------------------------------

TEST(DeliveryIdTest, GitHubAndGiteaSendOneHeaderEach) {
  EXPECT_EQ(
      DeliveryId(Forge::kGitHub, Headers{{"x-github-delivery", "5e8b1c20-11f2-11ef-9a4e-2c1d"}}),
      "5e8b1c20-11f2-11ef-9a4e-2c1d");
  // Gitea also sends X-GitHub-Delivery with the same value; its own header is the one read.
  EXPECT_EQ(DeliveryId(Forge::kGitea, Headers{{"X-Gitea-Delivery", "f6266f16-1bf3-46a5"},
                                              {"X-GitHub-Delivery", "f6266f16-1bf3-46a5"}}),
            "f6266f16-1bf3-46a5");
  EXPECT_EQ(DeliveryId(Forge::kGitHub, Headers{}), "");
}

// GitLab "Webhooks" > "Delivery headers": Idempotency-Key stays the same
// across retries; X-Gitlab-Event-UUID is older and does not.
TEST(DeliveryIdTest, GitLabPrefersIdempotencyKeyToEventUuid) {
  EXPECT_EQ(DeliveryId(Forge::kGitLab, Headers{{"X-Gitlab-Event-UUID", "13792a34-cac6"},
                                               {"Idempotency-Key", "f5e5f430-f57b"}}),
            "f5e5f430-f57b");
  EXPECT_EQ(DeliveryId(Forge::kGitLab, Headers{{"X-Gitlab-Event-UUID", "13792a34-cac6"}}),
            "13792a34-cac6");
  EXPECT_EQ(DeliveryId(Forge::kGitLab, Headers{{"X-Gitlab-Webhook-UUID", "02affd2d-2cba"}}), "");
}

TEST(ParseDeliveryTest, ReadsTheEventAndTheDeliveryIdFromTheHeaders) {
  Headers headers{{"x-gitlab-event", "Push Hook"}, {"idempotency-key", "f5e5f430-f57b"}};
  Result<ForgeEvent> e = ParseDelivery(Forge::kGitLab, headers, ReadPayload("gitlab/push.json"));
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->kind, Kind::kPush);
  EXPECT_EQ(e->event_name, "Push Hook");
  EXPECT_EQ(e->delivery_id, "f5e5f430-f57b");
}

TEST(ParseDeliveryTest, NamesTheMissingEventHeader) {
  Result<ForgeEvent> e = ParseDelivery(Forge::kGitHub, Headers{{"X-GitHub-Delivery", "abc"}},
                                       ReadPayload("github/push.json"));
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("missing X-GitHub-Event"), std::string::npos)
      << e.error().message;
}

// ---- GitHub payloads ("Webhook events and payloads": push, pull_request, ping)

TEST(GitHubEventTest, APushToABranchSaysWhichBranchAndRepository) {
  ForgeEvent e = Parsed(Forge::kGitHub, "push", "github/push.json");
  EXPECT_EQ(e.kind, Kind::kPush);
  EXPECT_EQ(e.branch, "main");
  EXPECT_FALSE(e.branch_deleted);
  EXPECT_EQ(e.head_sha_hint, "9e2d7c4a1b8f5e3d0c6a9b2f7e4d1a8c5b3f0e6d");
  EXPECT_TRUE(NamesRepository(e, "git@github.com:acme/shop.git"));
  EXPECT_TRUE(NamesRepository(e, "https://github.com/acme/shop"));
  EXPECT_FALSE(NamesRepository(e, "https://github.com/acme/shop-api"));
}

TEST(GitHubEventTest, ATagPushIsIgnoredWithTheTagAsReason) {
  ForgeEvent e = Parsed(Forge::kGitHub, "push", "github/push_tag.json");
  EXPECT_EQ(e.kind, Kind::kIgnored);
  EXPECT_EQ(e.branch, "");
  EXPECT_NE(e.ignored_reason.find("refs/tags/v2.4.0"), std::string::npos) << e.ignored_reason;
}

TEST(GitHubEventTest, ADeletedBranchIsAPushWithNoHead) {
  ForgeEvent e = Parsed(Forge::kGitHub, "push", "github/push_branch_deleted.json");
  EXPECT_EQ(e.kind, Kind::kPush);
  EXPECT_EQ(e.branch, "feature/gift-cards");
  EXPECT_TRUE(e.branch_deleted);
  EXPECT_EQ(e.head_sha_hint, "");
}

TEST(GitHubEventTest, PingNamesTheRepositoryOfTheNewHook) {
  ForgeEvent e = Parsed(Forge::kGitHub, "ping", "github/ping.json");
  EXPECT_EQ(e.kind, Kind::kPing);
  EXPECT_TRUE(NamesRepository(e, "https://github.com/acme/shop.git"));
}

TEST(GitHubEventTest, AnOpenedPullRequestSaysWhereItsHeadIs) {
  ForgeEvent e = Parsed(Forge::kGitHub, "pull_request", "github/pull_request_opened.json");
  EXPECT_EQ(e.kind, Kind::kPullRequest);
  EXPECT_EQ(e.action, PrAction::kOpened);
  EXPECT_EQ(e.action_name, "opened");
  EXPECT_EQ(e.number, 42);
  EXPECT_EQ(e.source_branch, "feature/gift-cards");
  EXPECT_EQ(e.target_branch, "main");
  EXPECT_EQ(e.head_ref, "refs/pull/42/head");
  EXPECT_EQ(e.head_sha_hint, "3c8e1a5f7b9d2c4e6a8f0b1d3e5c7a9f2b4d6e8a");
  EXPECT_FALSE(e.draft);
  EXPECT_FALSE(e.from_fork);
  EXPECT_TRUE(NamesRepository(e, "https://github.com/acme/shop"));
}

TEST(GitHubEventTest, NewCommitsFromAForkAreAnUpdateOfTheTargetRepository) {
  ForgeEvent e =
      Parsed(Forge::kGitHub, "pull_request", "github/pull_request_synchronize_fork.json");
  EXPECT_EQ(e.action, PrAction::kUpdated);
  EXPECT_EQ(e.number, 57);
  EXPECT_TRUE(e.from_fork);
  EXPECT_EQ(e.source_branch, "fix/tax-rounding");
  EXPECT_EQ(e.head_ref, "refs/pull/57/head");
  EXPECT_TRUE(NamesRepository(e, "git@github.com:acme/shop.git"));
  EXPECT_FALSE(NamesRepository(e, "https://github.com/lee-contrib/shop"));
}

TEST(GitHubEventTest, ClosedIsMergedOnlyWhenThePayloadSaysMerged) {
  EXPECT_EQ(Parsed(Forge::kGitHub, "pull_request", "github/pull_request_closed_merged.json").action,
            PrAction::kMerged);
  EXPECT_EQ(Parsed(Forge::kGitHub, "pull_request", "github/pull_request_closed.json").action,
            PrAction::kClosed);
}

TEST(GitHubEventTest, DraftsAreReportedAndReadyForReviewIsItsOwnAction) {
  ForgeEvent ready =
      Parsed(Forge::kGitHub, "pull_request", "github/pull_request_ready_for_review.json");
  EXPECT_EQ(ready.action, PrAction::kReadyForReview);
  EXPECT_FALSE(ready.draft);
  ForgeEvent draft =
      Parsed(Forge::kGitHub, "pull_request", "github/pull_request_converted_to_draft.json");
  EXPECT_EQ(draft.action, PrAction::kOther);
  EXPECT_EQ(draft.action_name, "converted_to_draft");
  EXPECT_TRUE(draft.draft);
}

TEST(GitHubEventTest, ChangingTheBaseBranchIsAnUpdate) {
  ForgeEvent e = Parsed(Forge::kGitHub, "pull_request", "github/pull_request_edited_base.json");
  EXPECT_EQ(e.action, PrAction::kUpdated);
  EXPECT_EQ(e.target_branch, "release/2024.05");
}

TEST(GitHubEventTest, OtherEventsAreIgnoredWithoutReadingTheirBody) {
  ForgeEvent issues = Parsed(Forge::kGitHub, "issues", "github/issues.json");
  EXPECT_EQ(issues.kind, Kind::kIgnored);
  EXPECT_NE(issues.ignored_reason.find("\"issues\""), std::string::npos) << issues.ignored_reason;
  Result<ForgeEvent> unread = ParseEvent(Forge::kGitHub, "star", "not JSON at all");
  ASSERT_TRUE(unread) << unread.error().message;
  EXPECT_EQ(unread->kind, Kind::kIgnored);
}

// ---- GitLab payloads ("Webhook events": push, tag, merge request events) ----

TEST(GitLabEventTest, APushHookSaysWhichBranchAndProject) {
  ForgeEvent e = Parsed(Forge::kGitLab, "Push Hook", "gitlab/push.json");
  EXPECT_EQ(e.kind, Kind::kPush);
  EXPECT_EQ(e.branch, "main");
  EXPECT_EQ(e.head_sha_hint, "5f1a3c7e9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a");
  EXPECT_TRUE(NamesRepository(e, "https://gitlab.example.com/platform/shop"));
  EXPECT_TRUE(NamesRepository(e, "ssh://git@gitlab.example.com/platform/shop.git"));
}

TEST(GitLabEventTest, ATagPushHookIsIgnored) {
  ForgeEvent e = Parsed(Forge::kGitLab, "Tag Push Hook", "gitlab/tag_push.json");
  EXPECT_EQ(e.kind, Kind::kIgnored);
  EXPECT_NE(e.ignored_reason.find("refs/tags/v2.4.0"), std::string::npos) << e.ignored_reason;
}

TEST(GitLabEventTest, ADeletedBranchIsAPushToTheZeroId) {
  ForgeEvent e = Parsed(Forge::kGitLab, "Push Hook", "gitlab/push_branch_deleted.json");
  EXPECT_EQ(e.kind, Kind::kPush);
  EXPECT_EQ(e.branch, "feature/gift-cards");
  EXPECT_TRUE(e.branch_deleted);
  EXPECT_EQ(e.head_sha_hint, "");
}

TEST(GitLabEventTest, AnOpenedDraftMergeRequestUsesTheProjectScopedNumber) {
  ForgeEvent e = Parsed(Forge::kGitLab, "Merge Request Hook", "gitlab/merge_request_open.json");
  EXPECT_EQ(e.kind, Kind::kPullRequest);
  EXPECT_EQ(e.action, PrAction::kOpened);
  EXPECT_EQ(e.number, 7);  // iid, not the instance-wide id
  EXPECT_EQ(e.head_ref, "refs/merge-requests/7/head");
  EXPECT_TRUE(e.draft);
  EXPECT_FALSE(e.from_fork);
  EXPECT_EQ(e.source_branch, "feature/gift-cards");
  EXPECT_EQ(e.target_branch, "main");
  EXPECT_EQ(e.head_sha_hint, "3c8e1a5f7b9d2c4e6a8f0b1d3e5c7a9f2b4d6e8a");
  EXPECT_TRUE(NamesRepository(e, "git@gitlab.example.com:platform/shop.git"));
}

TEST(GitLabEventTest, AnUpdateWithOldrevBroughtNewCommits) {
  ForgeEvent e =
      Parsed(Forge::kGitLab, "Merge Request Hook", "gitlab/merge_request_update_commits_fork.json");
  EXPECT_EQ(e.action, PrAction::kUpdated);
  EXPECT_EQ(e.action_name, "update");
  EXPECT_TRUE(e.from_fork);
  EXPECT_EQ(e.source_branch, "fix/tax-rounding");
  EXPECT_TRUE(NamesRepository(e, "https://gitlab.example.com/platform/shop.git"));
  EXPECT_FALSE(NamesRepository(e, "git@gitlab.example.com:lee/shop.git"));
}

TEST(GitLabEventTest, AnUpdateThatClearsDraftIsReadyForReview) {
  ForgeEvent e =
      Parsed(Forge::kGitLab, "Merge Request Hook", "gitlab/merge_request_update_ready.json");
  EXPECT_EQ(e.action, PrAction::kReadyForReview);
  EXPECT_FALSE(e.draft);
}

TEST(GitLabEventTest, AnUpdateWithoutCodeChangesIsOther) {
  ForgeEvent e =
      Parsed(Forge::kGitLab, "Merge Request Hook", "gitlab/merge_request_update_labels.json");
  EXPECT_EQ(e.action, PrAction::kOther);
  EXPECT_EQ(e.action_name, "update");
}

TEST(GitLabEventTest, MergeAndCloseAreTheirOwnActions) {
  EXPECT_EQ(Parsed(Forge::kGitLab, "Merge Request Hook", "gitlab/merge_request_merge.json").action,
            PrAction::kMerged);
  EXPECT_EQ(Parsed(Forge::kGitLab, "Merge Request Hook", "gitlab/merge_request_close.json").action,
            PrAction::kClosed);
}

TEST(GitLabEventTest, SystemHooksAreIgnoredEvenWhenTheyCarryAPush) {
  ForgeEvent e = Parsed(Forge::kGitLab, "System Hook", "gitlab/push.json");
  EXPECT_EQ(e.kind, Kind::kIgnored);
  EXPECT_NE(e.ignored_reason.find("system hooks"), std::string::npos) << e.ignored_reason;
}

// ---- Gitea payloads (docs.gitea.com "Webhooks" for push; pull_request and
// delete follow Gitea's modules/structs PullRequestPayload / DeletePayload) --

TEST(GiteaEventTest, APushSaysWhichBranchAndRepository) {
  ForgeEvent e = Parsed(Forge::kGitea, "push", "gitea/push.json");
  EXPECT_EQ(e.kind, Kind::kPush);
  EXPECT_EQ(e.branch, "main");
  EXPECT_EQ(e.head_sha_hint, "d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2");
  EXPECT_TRUE(NamesRepository(e, "https://git.example.org/acme/shop"));
  EXPECT_TRUE(NamesRepository(e, "git@git.example.org:acme/shop.git"));
}

TEST(GiteaEventTest, ATagPushIsIgnored) {
  EXPECT_EQ(Parsed(Forge::kGitea, "push", "gitea/push_tag.json").kind, Kind::kIgnored);
}

TEST(GiteaEventTest, ADeletedBranchArrivesAsADeleteEvent) {
  ForgeEvent e = Parsed(Forge::kGitea, "delete", "gitea/delete_branch.json");
  EXPECT_EQ(e.kind, Kind::kPush);
  EXPECT_EQ(e.branch, "feature/gift-cards");
  EXPECT_TRUE(e.branch_deleted);
  EXPECT_TRUE(NamesRepository(e, "https://git.example.org/acme/shop.git"));
}

TEST(GiteaEventTest, AnOpenedDraftPullRequest) {
  ForgeEvent e = Parsed(Forge::kGitea, "pull_request", "gitea/pull_request_opened_draft.json");
  EXPECT_EQ(e.kind, Kind::kPullRequest);
  EXPECT_EQ(e.action, PrAction::kOpened);
  EXPECT_EQ(e.number, 9);
  EXPECT_EQ(e.head_ref, "refs/pull/9/head");
  EXPECT_EQ(e.source_branch, "feature/gift-cards");
  EXPECT_EQ(e.target_branch, "main");
  EXPECT_TRUE(e.draft);
  EXPECT_FALSE(e.from_fork);
}

TEST(GiteaEventTest, WithoutADraftFieldAWipTitleMakesADraft) {
  EXPECT_TRUE(
      Parsed(Forge::kGitea, "pull_request", "gitea/pull_request_opened_wip_title.json").draft);
}

TEST(GiteaEventTest, DroppingTheWipPrefixIsReadyForReview) {
  ForgeEvent e = Parsed(Forge::kGitea, "pull_request", "gitea/pull_request_edited_ready.json");
  EXPECT_EQ(e.action, PrAction::kReadyForReview);
  EXPECT_FALSE(e.draft);
}

TEST(GiteaEventTest, SynchronizedFromAForkIsAnUpdate) {
  ForgeEvent e = Parsed(Forge::kGitea, "pull_request", "gitea/pull_request_synchronized_fork.json");
  EXPECT_EQ(e.action, PrAction::kUpdated);
  EXPECT_EQ(e.number, 12);
  EXPECT_TRUE(e.from_fork);
  EXPECT_EQ(e.source_branch, "fix/tax-rounding");
  EXPECT_FALSE(NamesRepository(e, "https://git.example.org/lee/shop"));
}

TEST(GiteaEventTest, ClosedIsMergedOnlyWhenThePayloadSaysMerged) {
  EXPECT_EQ(Parsed(Forge::kGitea, "pull_request", "gitea/pull_request_closed_merged.json").action,
            PrAction::kMerged);
  EXPECT_EQ(Parsed(Forge::kGitea, "pull_request", "gitea/pull_request_closed.json").action,
            PrAction::kClosed);
}

// ---- Payloads gitopsd cannot use ---------------------------------------------

TEST(PayloadErrorTest, BadJsonIsAnErrorWithALineAndColumn) {
  Result<ForgeEvent> e =
      ParseEvent(Forge::kGitHub, "push", "{\n  \"ref\": \"refs/heads/main\",\n  \"after\": }\n");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("GitHub push payload is not valid JSON"), std::string::npos)
      << e.error().message;
  EXPECT_NE(e.error().message.find("line 3"), std::string::npos) << e.error().message;
}

TEST(PayloadErrorTest, APayloadMustBeAnObject) {
  Result<ForgeEvent> e = ParseEvent(Forge::kGitea, "push", "[]");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().message, "Gitea push payload is not a JSON object");
}

TEST(PayloadErrorTest, AMissingFieldIsNamedByItsPath) {
  Result<ForgeEvent> e = ParseEvent(Forge::kGitHub, "pull_request", R"({
    "action": "opened", "number": 3,
    "pull_request": {"head": {"ref": "topic"}, "base": {"ref": "main"}},
    "repository": {"clone_url": "https://github.com/acme/shop.git"}})");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().message,
            "GitHub pull_request payload: missing \"pull_request.head.sha\" (a non-empty string)");
}

TEST(PayloadErrorTest, AFieldOfTheWrongTypeSaysWhatItIs) {
  Result<ForgeEvent> e = ParseEvent(Forge::kGitLab, "Merge Request Hook", R"({
    "object_kind": "merge_request",
    "project": {"git_http_url": "https://gitlab.example.com/platform/shop.git"},
    "object_attributes": {"iid": "7", "source_branch": "topic", "target_branch": "main"}})");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().message,
            "GitLab Merge Request Hook payload: \"object_attributes.iid\" is a string, "
            "expected a positive integer");

  Result<ForgeEvent> push = ParseEvent(Forge::kGitHub, "push", R"({
    "ref": {"name": "main"}, "repository": {"clone_url": "https://github.com/acme/shop.git"}})");
  ASSERT_FALSE(push);
  EXPECT_EQ(push.error().message,
            "GitHub push payload: \"ref\" is an object, expected a non-empty string");
}

TEST(PayloadErrorTest, APushMustNameItsRepository) {
  Result<ForgeEvent> e =
      ParseEvent(Forge::kGitea, "push", R"({"ref": "refs/heads/main", "after": "abc"})");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("no repository URL"), std::string::npos) << e.error().message;
}

// ---- Repository URLs -----------------------------------------------------------

TEST(SameRepositoryTest, TheScpFormMatchesTheWebAddress) {
  EXPECT_TRUE(SameRepository("git@github.com:acme/shop.git", "https://github.com/acme/shop"));
  EXPECT_TRUE(SameRepository("https://github.com/acme/shop", "git@github.com:acme/shop.git"));
}

TEST(SameRepositoryTest, SchemeUserPortSuffixAndCaseDoNotMatter) {
  const char* kShop = "https://github.com/acme/shop";
  for (const char* url :
       {"http://GitHub.com/Acme/Shop.git/", "ssh://git@github.com:22/acme/shop.git",
        "https://ci-bot:t0ken@github.com/acme/shop.git", "git://github.com/acme/shop.git",
        "ssh://git@github.com/acme/shop", "https://github.com//acme/shop",
        "  https://github.com/acme/shop\n", "https://github.com/acme/shop.git?ref=x"}) {
    EXPECT_TRUE(SameRepository(kShop, url)) << url;
  }
}

TEST(SameRepositoryTest, OtherRepositoriesDoNotMatch) {
  const char* kShop = "git@github.com:acme/shop.git";
  for (const char* url :
       {"https://github.com/acme/shop-api", "https://github.com/acme/shops",
        "https://github.com/acme/shop/wiki", "https://github.com/other/shop",
        "https://gitlab.com/acme/shop", "https://github.com/acme", "https://github.com/shop"}) {
    EXPECT_FALSE(SameRepository(kShop, url)) << url;
  }
}

TEST(SameRepositoryTest, GitLabSubgroupsAreTheirPathAndNoOtherPath) {
  EXPECT_TRUE(SameRepository("git@gitlab.example.com:platform/web/shop.git",
                             "https://gitlab.example.com/platform/web/shop"));
  EXPECT_FALSE(SameRepository("git@gitlab.example.com:platform/web/shop.git",
                              "https://gitlab.example.com/platform/shop"));
}

TEST(SameRepositoryTest, IPv6HostsMatchAcrossForms) {
  EXPECT_TRUE(SameRepository("ssh://git@[2001:db8::7]:2222/acme/shop.git",
                             "git@[2001:db8::7]:acme/shop.git"));
  EXPECT_FALSE(SameRepository("ssh://git@[2001:db8::7]/acme/shop.git",
                              "ssh://git@[2001:db8::8]/acme/shop.git"));
}

TEST(SameRepositoryTest, UrlsWithoutAHostOrAPathNeverMatch) {
  EXPECT_FALSE(SameRepository("/srv/git/shop.git", "/srv/git/shop.git"));
  EXPECT_FALSE(SameRepository("file:///srv/git/shop.git", "file:///srv/git/shop.git"));
  EXPECT_FALSE(SameRepository("https://github.com/", "https://github.com"));
  EXPECT_FALSE(SameRepository("", ""));
}

TEST(ForgeNameTest, TheHookPathSegmentNamesTheForge) {
  for (Forge forge : {Forge::kGitHub, Forge::kGitLab, Forge::kGitea}) {
    Result<Forge> back = ForgeFromName(ForgeName(forge));
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, forge);
  }
  Result<Forge> unknown = ForgeFromName("bitbucket");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("\"bitbucket\""), std::string::npos);
}

}  // namespace
}  // namespace gitopsd::triggers
