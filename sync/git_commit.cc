// Commits made without a work tree: a parent's tree with FileWrites applied
// (paths checked, blobs written), committed by an author.
#include <map>
#include <optional>
#include <vector>

#include "sync/git_internal.h"

namespace gitopsd::git {
namespace git_internal {

Result<TreePtr> EmptyTree(git_repository* repo) {
  git_treebuilder* raw_builder = nullptr;
  if (git_treebuilder_new(&raw_builder, repo, nullptr) < 0) {
    return Fail("cannot make an empty tree: " + LastError());
  }
  TreeBuilderPtr builder(raw_builder);
  git_oid oid;
  git_tree* raw_tree = nullptr;
  if (git_treebuilder_write(&oid, builder.get()) < 0 || git_tree_lookup(&raw_tree, repo, &oid) < 0) {
    return Fail("cannot make an empty tree: " + LastError());
  }
  return TreePtr(raw_tree);
}

}  // namespace git_internal

using namespace git_internal;

namespace {

// A FileWrite path must name a file inside the repository in Git's own form,
// so that what is committed is exactly what the caller named.
Status CheckWritePath(const std::string& path) {
  if (path.empty()) return Fail("a file path is empty");
  if (path.front() == '/') {
    return Fail("file path '" + path + "' is absolute; use a path relative to the repository root");
  }
  size_t start = 0;
  while (true) {
    size_t slash = path.find('/', start);
    std::string_view part(path.data() + start, (slash == std::string::npos ? path.size() : slash) - start);
    if (part.empty() || part == "." || part == "..") {
      return Fail("file path '" + path + "' has an empty, '.' or '..' component");
    }
    if (Lower(std::string(part)) == ".git") return Fail("file path '" + path + "' points into .git");
    if (part.find('\0') != std::string_view::npos) {
      return Fail("file path '" + path + "' contains a NUL byte");
    }
    if (slash == std::string::npos) return Ok();
    start = slash + 1;
  }
}

// The entry at `path` in `tree`, or null if there is none (a missing folder
// on the way, or a file where a folder would be, also mean none).
TreeEntryPtr EntryAt(git_tree* tree, const std::string& path) {
  git_tree_entry* raw = nullptr;
  if (git_tree_entry_bypath(&raw, tree, path.c_str()) < 0) {
    git_error_clear();
    return TreeEntryPtr();
  }
  return TreeEntryPtr(raw);
}

// Turns one FileWrite into a tree update, or nullopt when it changes nothing
// (deleting a missing file). Writes the blob for new content.
Result<std::optional<git_tree_update>> ToTreeUpdate(git_repository* repo, git_tree* base,
                                                    const std::string& path,
                                                    const std::optional<std::string>& content) {
  TreeEntryPtr existing = EntryAt(base, path);
  if (existing && git_tree_entry_type(existing.get()) == GIT_OBJECT_TREE) {
    return Fail("'" + path + "' is a folder in the parent commit, not a file");
  }
  git_tree_update update{};
  update.path = path.c_str();
  if (!content) {
    if (!existing) return std::optional<git_tree_update>();
    update.action = GIT_TREE_UPDATE_REMOVE;
    return std::optional(update);
  }
  if (git_blob_create_from_buffer(&update.id, repo, content->data(), content->size()) < 0) {
    return Fail("cannot store the content of '" + path + "': " + LastError());
  }
  update.action = GIT_TREE_UPDATE_UPSERT;
  bool executable = existing && git_tree_entry_filemode(existing.get()) == GIT_FILEMODE_BLOB_EXECUTABLE;
  update.filemode = executable ? GIT_FILEMODE_BLOB_EXECUTABLE : GIT_FILEMODE_BLOB;
  return std::optional(update);
}

// The id of the tree `writes` make of `base` (base's own id when they change
// nothing). One update per path, the last write winning; the map keeps each
// path's storage alive for the git_tree_update that points into it.
Result<git_oid> ApplyWrites(git_repository* repo, git_tree* base, const std::vector<FileWrite>& writes) {
  std::map<std::string, const std::optional<std::string>*> latest;
  for (const FileWrite& write : writes) {
    if (auto valid = CheckWritePath(write.path); !valid) return std::unexpected(valid.error());
    latest[write.path] = &write.content;
  }
  std::vector<git_tree_update> updates;
  for (const auto& [path, content] : latest) {
    auto update = ToTreeUpdate(repo, base, path, *content);
    if (!update) return std::unexpected(update.error());
    if (*update) updates.push_back(**update);
  }
  git_oid tree_id = *git_tree_id(base);
  if (!updates.empty() && git_tree_create_updated(&tree_id, repo, base, updates.size(), updates.data()) < 0) {
    return Fail("cannot apply the file changes (" + LastError() + ")");
  }
  return tree_id;
}

}  // namespace

Result<std::string> Repository::CreateCommit(const std::string& parent, const std::vector<FileWrite>& writes,
                                             const Signature& author, const std::string& message) {
  const std::string what = "cannot create a commit " +
                           (parent.empty() ? std::string("without parent") : "on " + parent) + " in " + dir_ +
                           ": ";
  CommitPtr parent_commit;
  TreePtr base;
  if (parent.empty()) {
    auto empty = EmptyTree(repo_.get());
    if (!empty) return Fail(what + empty.error().message);
    base = std::move(*empty);
  } else {
    auto found = FindCommit(repo_.get(), parent);
    if (!found) return Fail(what + found.error().message);
    parent_commit = std::move(*found);
    git_tree* raw_tree = nullptr;
    if (git_commit_tree(&raw_tree, parent_commit.get()) < 0) return Fail(what + LastError());
    base.reset(raw_tree);
  }

  auto tree_id = ApplyWrites(repo_.get(), base.get(), writes);
  if (!tree_id) return Fail(what + tree_id.error().message);
  git_tree* raw_tree = nullptr;
  if (git_tree_lookup(&raw_tree, repo_.get(), &*tree_id) < 0) return Fail(what + LastError());
  TreePtr tree(raw_tree);

  git_signature* raw_signature = nullptr;
  if (git_signature_now(&raw_signature, author.name.c_str(), author.email.c_str()) < 0) {
    return Fail(what + "the author '" + author.name + " <" + author.email + ">' is not valid (" +
                LastError() + ")");
  }
  SignaturePtr signature(raw_signature);
  const git_commit* parents[] = {parent_commit.get()};
  git_oid commit_id;
  if (git_commit_create(&commit_id, repo_.get(), nullptr, signature.get(), signature.get(), nullptr,
                        message.c_str(), tree.get(), parent_commit ? 1 : 0, parents) < 0) {
    return Fail(what + LastError());
  }
  return OidString(commit_id);
}

}  // namespace gitopsd::git
