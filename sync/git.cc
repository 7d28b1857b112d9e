// The Git room's mirror and its read side: opening or creating the bare
// mirror, and reading commits, trees, diffs and blobs in it. git_internal.h
// says where fetch, commits and pushes live.
#include "sync/git.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <mutex>
#include <utility>

#include "sync/git_internal.h"

namespace gitopsd::git {
namespace git_internal {

std::string LastError() {
  const git_error* error = git_error_last();
  return error != nullptr && error->message != nullptr ? error->message : "unknown libgit2 error";
}

std::string OidString(const git_oid& oid) {
  char buf[GIT_OID_HEXSZ + 1];
  git_oid_tostr(buf, sizeof(buf), &oid);
  return buf;
}

Result<git_oid> ParseOid(const std::string& id, std::string_view what) {
  git_oid oid;
  bool hex = id.size() == GIT_OID_HEXSZ &&
             std::ranges::all_of(id, [](unsigned char c) { return std::isxdigit(c) != 0; });
  if (!hex || git_oid_fromstr(&oid, id.c_str()) < 0) {
    return Fail("'" + id + "' is not a " + std::string(what) + " id (expected 40 hex digits)");
  }
  return oid;
}

std::string Lower(std::string s) {
  std::ranges::transform(s, s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

Result<CommitPtr> FindCommit(git_repository* repo, const std::string& commit_id) {
  auto oid = ParseOid(commit_id, "commit");
  if (!oid) return std::unexpected(oid.error());
  git_commit* raw = nullptr;
  if (git_commit_lookup(&raw, repo, &*oid) < 0) {
    return Fail("commit " + commit_id + " is not in the mirror (" + LastError() + ")");
  }
  return CommitPtr(raw);
}

}  // namespace git_internal

using namespace git_internal;

namespace {

std::string NormalizeFolder(std::string folder) {
  while (folder.starts_with("./")) folder.erase(0, 2);
  while (folder.starts_with('/')) folder.erase(0, 1);
  while (folder.ends_with('/')) folder.pop_back();
  return folder == "." ? "" : folder;
}

std::string JoinPath(const std::string& folder, const char* path) {
  return folder.empty() ? std::string(path) : folder + "/" + path;
}

EntryKind KindOfMode(uint32_t mode) {
  switch (mode) {
    case GIT_FILEMODE_BLOB_EXECUTABLE:
      return EntryKind::kExecutable;
    case GIT_FILEMODE_LINK:
      return EntryKind::kSymlink;
    case GIT_FILEMODE_COMMIT:
      return EntryKind::kSubmodule;
    case GIT_FILEMODE_TREE:
      return EntryKind::kTree;
    default:
      return EntryKind::kFile;
  }
}

// The tree of `folder` at `commit_id`; null when the commit id is empty or
// the folder is missing or not a folder (both count as an empty folder).
Result<TreePtr> FolderTree(git_repository* repo, const std::string& commit_id, const std::string& folder) {
  if (commit_id.empty()) return TreePtr();
  auto commit = FindCommit(repo, commit_id);
  if (!commit) return std::unexpected(commit.error());
  git_tree* root = nullptr;
  if (git_commit_tree(&root, commit->get()) < 0) {
    return Fail("cannot read the tree of commit " + commit_id + ": " + LastError());
  }
  TreePtr root_tree(root);
  if (folder.empty()) return root_tree;
  git_tree_entry* raw_entry = nullptr;
  int rc = git_tree_entry_bypath(&raw_entry, root_tree.get(), folder.c_str());
  if (rc == GIT_ENOTFOUND) return TreePtr();
  if (rc < 0) return Fail("cannot look up '" + folder + "' in commit " + commit_id + ": " + LastError());
  TreeEntryPtr entry(raw_entry);
  if (git_tree_entry_type(entry.get()) != GIT_OBJECT_TREE) return TreePtr();
  git_tree* sub = nullptr;
  if (git_tree_lookup(&sub, repo, git_tree_entry_id(entry.get())) < 0) {
    return Fail("cannot read folder '" + folder + "' of commit " + commit_id + ": " + LastError());
  }
  return TreePtr(sub);
}

Change ToChange(const git_diff_delta& delta, const std::string& folder) {
  Change change;
  switch (delta.status) {
    case GIT_DELTA_ADDED:
    case GIT_DELTA_COPIED:
      change.kind = Change::Kind::kAdded;
      break;
    case GIT_DELTA_DELETED:
      change.kind = Change::Kind::kDeleted;
      break;
    case GIT_DELTA_RENAMED:
      change.kind = Change::Kind::kRenamed;
      break;
    default:  // MODIFIED, TYPECHANGE
      change.kind = Change::Kind::kModified;
      break;
  }
  change.old_path = JoinPath(folder, delta.old_file.path);
  change.new_path = JoinPath(folder, delta.new_file.path);
  change.old_kind = KindOfMode(delta.old_file.mode);
  change.new_kind = KindOfMode(delta.new_file.mode);
  if (change.kind == Change::Kind::kAdded) {
    change.old_path = change.new_path;
    change.old_kind = change.new_kind;
  } else {
    change.old_blob_id = OidString(delta.old_file.id);
  }
  if (change.kind == Change::Kind::kDeleted) {
    change.new_path = change.old_path;
    change.new_kind = change.old_kind;
  } else {
    change.new_blob_id = OidString(delta.new_file.id);
  }
  return change;
}

struct WalkState {
  std::string folder;
  std::vector<TreeEntry>* out;
};

int CollectEntry(const char* root, const git_tree_entry* entry, void* payload) {
  auto* state = static_cast<WalkState*>(payload);
  if (git_tree_entry_type(entry) == GIT_OBJECT_TREE) return 0;  // descend
  std::string relative = std::string(root) + git_tree_entry_name(entry);
  state->out->push_back(TreeEntry{JoinPath(state->folder, relative.c_str()),
                                  OidString(*git_tree_entry_id(entry)),
                                  KindOfMode(git_tree_entry_filemode(entry))});
  return 0;
}

}  // namespace

void InitLibrary() {
  static std::once_flag once;
  std::call_once(once, [] { git_libgit2_init(); });
}

std::string RedactUrl(const std::string& url) {
  size_t sep = url.find("://");
  if (sep == std::string::npos) return url;
  size_t start = sep + 3;
  size_t end = url.find('/', start);
  if (end == std::string::npos) end = url.size();
  size_t at = url.rfind('@', end - 1);
  if (at == std::string::npos || at < start) return url;
  std::string_view userinfo(url.data() + start, at - start);
  if (userinfo.find(':') == std::string_view::npos) return url;  // no password
  return url.substr(0, start) + url.substr(at + 1);
}

void Repository::RepoDeleter::operator()(git_repository* repo) const { git_repository_free(repo); }

Repository::Repository(std::unique_ptr<git_repository, RepoDeleter> repo, std::string dir)
    : repo_(std::move(repo)), dir_(std::move(dir)) {}
Repository::Repository(Repository&&) noexcept = default;
Repository& Repository::operator=(Repository&&) noexcept = default;
Repository::~Repository() = default;

Result<Repository> Repository::OpenOrInit(const std::string& dir, const std::string& url) {
  InitLibrary();
  if (url.empty()) return Fail("cannot set up the mirror in " + dir + ": the remote URL is empty");
  std::error_code ec;
  bool has_content = std::filesystem::exists(dir, ec) && !std::filesystem::is_empty(dir, ec);
  git_repository* raw = nullptr;
  if (has_content) {
    if (git_repository_open_ext(&raw, dir.c_str(),
                                GIT_REPOSITORY_OPEN_NO_SEARCH | GIT_REPOSITORY_OPEN_BARE, nullptr) < 0) {
      return Fail(dir + " exists but is not a Git repository (" + LastError() +
                  "); remove it or choose another folder");
    }
  } else {
    git_repository_init_options options;
    git_repository_init_options_init(&options, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
    options.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH;
    options.initial_head = "main";
    if (git_repository_init_ext(&raw, dir.c_str(), &options) < 0) {
      return Fail("cannot create a Git mirror in " + dir + ": " + LastError());
    }
  }
  std::unique_ptr<git_repository, RepoDeleter> repo(raw);

  git_remote* raw_remote = nullptr;
  int rc = git_remote_lookup(&raw_remote, repo.get(), "origin");
  RemotePtr remote(raw_remote);
  if (rc == GIT_ENOTFOUND) {
    rc = git_remote_create(&raw_remote, repo.get(), "origin", url.c_str());
    remote.reset(raw_remote);
  } else if (rc == 0 && url != git_remote_url(remote.get())) {
    rc = git_remote_set_url(repo.get(), "origin", url.c_str());
  }
  if (rc < 0) {
    return Fail("cannot set remote origin of " + dir + " to " + RedactUrl(url) + ": " + LastError());
  }
  return Repository(std::move(repo), dir);
}

Result<std::string> Repository::FetchedHead(const std::string& branch) const {
  git_oid oid;
  std::string ref = "refs/remotes/origin/" + branch;
  if (git_reference_name_to_id(&oid, repo_.get(), ref.c_str()) < 0) {
    return Fail("branch '" + branch + "' has not been fetched into " + dir_ + " yet");
  }
  return OidString(oid);
}

Result<std::vector<Change>> Repository::DiffTrees(const std::string& old_commit,
                                                  const std::string& new_commit,
                                                  const std::string& folder) const {
  const std::string dir = NormalizeFolder(folder);
  auto old_tree = FolderTree(repo_.get(), old_commit, dir);
  if (!old_tree) return std::unexpected(old_tree.error());
  if (new_commit.empty()) return Fail("cannot diff: the new commit id is empty");
  auto new_tree = FolderTree(repo_.get(), new_commit, dir);
  if (!new_tree) return std::unexpected(new_tree.error());

  const std::string what = "cannot diff '" + dir + "' between " +
                           (old_commit.empty() ? std::string("the empty tree") : old_commit) +
                           " and " + new_commit + ": ";
  git_diff_options options;
  git_diff_options_init(&options, GIT_DIFF_OPTIONS_VERSION);
  options.flags = GIT_DIFF_INCLUDE_TYPECHANGE;
  git_diff* raw = nullptr;
  if (git_diff_tree_to_tree(&raw, repo_.get(), old_tree->get(), new_tree->get(), &options) < 0) {
    return Fail(what + LastError());
  }
  DiffPtr diff(raw);
  git_diff_find_options find;
  git_diff_find_options_init(&find, GIT_DIFF_FIND_OPTIONS_VERSION);
  find.flags = GIT_DIFF_FIND_RENAMES;
  if (git_diff_find_similar(diff.get(), &find) < 0) return Fail(what + LastError());

  std::vector<Change> changes;
  size_t count = git_diff_num_deltas(diff.get());
  changes.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    const git_diff_delta* delta = git_diff_get_delta(diff.get(), i);
    if (delta == nullptr || delta->status == GIT_DELTA_UNMODIFIED) continue;
    changes.push_back(ToChange(*delta, dir));
  }
  return changes;
}

Result<std::vector<TreeEntry>> Repository::ListTree(const std::string& commit,
                                                    const std::string& folder) const {
  WalkState state{NormalizeFolder(folder), nullptr};
  auto tree = FolderTree(repo_.get(), commit, state.folder);
  if (!tree) return std::unexpected(tree.error());
  std::vector<TreeEntry> entries;
  if (!*tree) return entries;
  state.out = &entries;
  if (git_tree_walk(tree->get(), GIT_TREEWALK_PRE, CollectEntry, &state) < 0) {
    return Fail("cannot list '" + state.folder + "' at commit " + commit + ": " + LastError());
  }
  return entries;
}

Result<size_t> Repository::BlobSize(const std::string& blob_id) const {
  auto oid = ParseOid(blob_id, "blob");
  if (!oid) return std::unexpected(oid.error());
  git_odb* raw_odb = nullptr;
  if (git_repository_odb(&raw_odb, repo_.get()) < 0) {
    return Fail("cannot open the object database of " + dir_ + ": " + LastError());
  }
  OdbPtr odb(raw_odb);
  size_t size = 0;
  git_object_t type = GIT_OBJECT_INVALID;
  if (git_odb_read_header(&size, &type, odb.get(), &*oid) < 0) {
    return Fail("blob " + blob_id + " is not in the mirror (" + LastError() + ")");
  }
  if (type != GIT_OBJECT_BLOB) return Fail("object " + blob_id + " is not a blob");
  return size;
}

Result<std::string> Repository::ReadBlob(const std::string& blob_id, size_t max_bytes) const {
  auto size = BlobSize(blob_id);
  if (!size) return std::unexpected(size.error());
  if (*size > max_bytes) {
    return Fail("blob " + blob_id + " is " + std::to_string(*size) + " bytes, more than the limit of " +
                std::to_string(max_bytes) + " bytes");
  }
  auto oid = ParseOid(blob_id, "blob");
  git_blob* raw = nullptr;
  if (git_blob_lookup(&raw, repo_.get(), &*oid) < 0) {
    return Fail("cannot read blob " + blob_id + ": " + LastError());
  }
  BlobPtr blob(raw);
  const char* content = static_cast<const char*>(git_blob_rawcontent(blob.get()));
  return std::string(content, static_cast<size_t>(git_blob_rawsize(blob.get())));
}

Status Repository::ExportTree(const std::string& commit, const std::string& dest_dir) const {
  const std::string what = "cannot export commit " + commit + " into " + dest_dir + ": ";
  auto found = FindCommit(repo_.get(), commit);
  if (!found) return std::unexpected(found.error());
  std::error_code ec;
  std::filesystem::create_directories(dest_dir, ec);
  if (ec) return Fail(what + ec.message());
  if (!std::filesystem::is_empty(dest_dir, ec)) return Fail(what + "the folder is not empty");
  git_tree* raw_tree = nullptr;
  if (git_commit_tree(&raw_tree, found->get()) < 0) return Fail(what + LastError());
  TreePtr tree(raw_tree);
  auto empty = EmptyTree(repo_.get());
  if (!empty) return std::unexpected(empty.error());
  git_checkout_options opts = GIT_CHECKOUT_OPTIONS_INIT;
  // Against an empty baseline every file is an addition, whatever HEAD of
  // the mirror points at; the mirror's index is neither read nor written.
  opts.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_DONT_UPDATE_INDEX | GIT_CHECKOUT_DONT_WRITE_INDEX;
  opts.baseline = empty->get();
  opts.target_directory = dest_dir.c_str();
  if (git_checkout_tree(repo_.get(), reinterpret_cast<const git_object*>(tree.get()), &opts) < 0) {
    return Fail(what + LastError());
  }
  return Ok();
}

Result<CommitInfo> Repository::LookupCommit(const std::string& commit_id) const {
  auto commit = FindCommit(repo_.get(), commit_id);
  if (!commit) return std::unexpected(commit.error());
  CommitInfo info;
  info.id = OidString(*git_commit_id(commit->get()));
  const char* message = git_commit_message(commit->get());
  info.message = message != nullptr ? message : "";
  if (const git_signature* author = git_commit_author(commit->get()); author != nullptr) {
    info.author_name = author->name != nullptr ? author->name : "";
    info.author_email = author->email != nullptr ? author->email : "";
  }
  info.time = static_cast<int64_t>(git_commit_time(commit->get()));
  return info;
}

bool Repository::HasCommit(const std::string& commit_id) const {
  return FindCommit(repo_.get(), commit_id).has_value();
}

bool Repository::IsAncestor(const std::string& ancestor, const std::string& descendant) const {
  auto ancestor_commit = FindCommit(repo_.get(), ancestor);
  auto descendant_commit = FindCommit(repo_.get(), descendant);
  if (!ancestor_commit || !descendant_commit) return false;
  const git_oid* ancestor_id = git_commit_id(ancestor_commit->get());
  const git_oid* descendant_id = git_commit_id(descendant_commit->get());
  if (git_oid_equal(ancestor_id, descendant_id)) return true;
  return git_graph_descendant_of(repo_.get(), descendant_id, ancestor_id) == 1;
}

}  // namespace gitopsd::git
