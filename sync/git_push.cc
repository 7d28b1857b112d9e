// Pushes: a commit to a branch of the remote, never forced, and what the
// server answered (pushed, moved on the remote, or refused, with its words).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>

#include "sync/git_internal.h"

namespace gitopsd::git {

using namespace git_internal;

namespace {

int RecordPushStatus(const char* /*refname*/, const char* status, void* payload) {
  static_cast<TransportContext*>(payload)->push_status = status != nullptr ? status : "";
  return 0;
}

// Keeps what the server writes on the sideband (hook output, "remote: ..."),
// bounded so a chatty server cannot grow it without limit.
int RecordRemoteOutput(const char* text, int length, void* payload) {
  constexpr size_t kMaxRemoteOutput = 16 * 1024;
  auto* ctx = static_cast<TransportContext*>(payload);
  if (length > 0 && ctx->remote_output.size() < kMaxRemoteOutput) {
    ctx->remote_output.append(
        text, std::min(static_cast<size_t>(length), kMaxRemoteOutput - ctx->remote_output.size()));
  }
  return 0;
}

// The server's sideband text as one line: progress overwritten with '\r'
// keeps its last state, blank lines go, lines are joined with "; ".
std::string RemoteMessage(const std::string& output) {
  std::string joined;
  size_t start = 0;
  while (start < output.size()) {
    size_t end = output.find('\n', start);
    if (end == std::string::npos) end = output.size();
    std::string line = output.substr(start, end - start);
    auto blank = [](unsigned char c) { return std::isspace(c) != 0; };
    while (!line.empty() && blank(line.back())) line.pop_back();
    if (size_t cr = line.rfind('\r'); cr != std::string::npos) line.erase(0, cr + 1);
    while (!line.empty() && blank(line.front())) line.erase(0, 1);
    if (!line.empty()) joined += (joined.empty() ? "" : "; ") + line;
    start = end + 1;
  }
  return joined;
}

std::string WithoutFinalPeriod(std::string text) {
  while (!text.empty() && (text.back() == '.' || text.back() == ' ')) text.pop_back();
  return text;
}

PushResult MovedRemote(const std::string& branch, const std::string& detail) {
  return PushResult{PushOutcome::kRejectedNonFastForward,
                    "branch '" + branch + "' moved on the remote (" + detail + ")"};
}

// A ref status the server reported for a refused update. "non-fast-forward"
// and "fetch first" (and a ref that changed under receive-pack: "... but
// expected ...") mean the branch moved; anything else is a refusal.
PushResult ClassifyRejection(const std::string& branch, const std::string& status,
                             const std::string& remote) {
  std::string lower = Lower(status + " " + remote);
  std::string detail = remote.empty() ? status : remote + " (" + status + ")";
  for (const char* moved : {"non-fast-forward", "fetch first", "but expected"}) {
    if (lower.find(moved) != std::string::npos) return MovedRemote(branch, detail);
  }
  return PushResult{PushOutcome::kRejected, detail};
}

// Runs one push of `refspec` with gitopsd's credential and host-key checks;
// the server's verdict on the ref and its sideband text land in `ctx`.
int PushRef(git_remote* remote, std::string refspec, TransportContext* ctx) {
  char* refspec_chars = refspec.data();
  git_strarray refspecs{&refspec_chars, 1};
  git_push_options options;
  git_push_options_init(&options, GIT_PUSH_OPTIONS_VERSION);
  options.callbacks = MakeCallbacks(ctx);
  options.callbacks.push_update_reference = RecordPushStatus;
  options.callbacks.sideband_progress = RecordRemoteOutput;
  return git_remote_push(remote, &refspecs, &options);
}

// What a finished git_remote_push means: an outcome, or the cause of a
// transport failure. libgit2 refuses a non-fast-forward itself when it sees
// the remote head (GIT_ENONFASTFORWARD); the server reports its verdict
// through push_update_reference.
Result<PushResult> PushVerdict(int rc, const TransportContext& ctx, const std::string& branch) {
  if (rc == GIT_ENONFASTFORWARD) return MovedRemote(branch, WithoutFinalPeriod(LastError()));
  if (rc < 0) {
    std::string failure = DescribeTransportFailure(ctx, rc);
    if (ctx.cause.empty() && failure.find("status code: 403") != std::string::npos) {
      return PushResult{PushOutcome::kRejected, "permission denied (" + failure + ")"};
    }
    return Fail(failure);
  }
  if (!ctx.push_status) return Fail("the remote did not report the result of the update");
  if (!ctx.push_status->empty()) {
    return ClassifyRejection(branch, *ctx.push_status, RemoteMessage(ctx.remote_output));
  }
  return PushResult{PushOutcome::kPushed, ""};
}

// Deletes the private ref a push goes out from, however the push ends.
class OutgoingRef {
 public:
  OutgoingRef(git_repository* repo, std::string name) : repo_(repo), name_(std::move(name)) {}
  OutgoingRef(const OutgoingRef&) = delete;
  OutgoingRef& operator=(const OutgoingRef&) = delete;
  ~OutgoingRef() {
    git_reference* raw = nullptr;
    if (git_reference_lookup(&raw, repo_, name_.c_str()) == 0) {
      ReferencePtr ref(raw);
      git_reference_delete(ref.get());
    }
    git_error_clear();
  }
  const std::string& name() const { return name_; }

 private:
  git_repository* repo_;
  std::string name_;
};

}  // namespace

Result<PushResult> Repository::Push(const std::string& commit, const std::string& branch,
                                    const Credentials& creds) {
  InitLibrary();
  auto origin = FindOrigin(repo_.get(), dir_);
  if (!origin) return std::unexpected(origin.error());
  RemotePtr remote = std::move(*origin);
  const std::string url = git_remote_url(remote.get());
  const std::string prefix =
      "cannot push commit " + commit + " to branch '" + branch + "' of " + RedactUrl(url) + ": ";
  const std::string remote_ref = "refs/heads/" + branch;
  if (!IsBranchName(branch)) return Fail(prefix + "'" + branch + "' is not a valid branch name");
  auto found = FindCommit(repo_.get(), commit);
  if (!found) return Fail(prefix + found.error().message);
  const git_oid commit_id = *git_commit_id(found->get());

  TransportContext ctx;
  if (auto ready = PrepareTransport(&ctx, url, creds); !ready) return Fail(prefix + ready.error().message);

  // libgit2 pushes from a ref, so the commit gets a private one for the
  // push, unique so that pushes from other Repository objects on this
  // folder cannot delete it under this one.
  static std::atomic<uint64_t> push_count{0};
  OutgoingRef outgoing(repo_.get(), "refs/gitopsd/outgoing/" + commit + "-" + std::to_string(getpid()) + "-" +
                                        std::to_string(++push_count));
  if (git_reference_create(nullptr, repo_.get(), outgoing.name().c_str(), &commit_id, 1, nullptr) < 0) {
    return Fail(prefix + "cannot create " + outgoing.name() + " in " + dir_ + ": " + LastError());
  }
  int rc = PushRef(remote.get(), outgoing.name() + ":" + remote_ref, &ctx);  // no '+': never forced
  auto verdict = PushVerdict(rc, ctx, branch);
  if (!verdict) return Fail(prefix + verdict.error().message);
  if (verdict->outcome != PushOutcome::kPushed) return verdict;

  const std::string tracking = "refs/remotes/origin/" + branch;
  if (git_reference_create(nullptr, repo_.get(), tracking.c_str(), &commit_id, 1, "gitopsd: push") < 0) {
    return Fail("commit " + commit + " was pushed to branch '" + branch + "' of " + RedactUrl(url) +
                ", but " + tracking + " in " + dir_ + " could not be updated: " + LastError());
  }
  return verdict;
}

}  // namespace gitopsd::git
