// Thin RAII over the SQLite C API: a connection, prepared statements and
// transaction scopes. Nothing here knows gitopsd's tables (see store.h).
//
// A Transaction commits only when Commit() is called; its destructor rolls
// back, so an early return can never half-apply a change.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "sync/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace gitopsd::sqlite {

class Statement;
class CachedStatement;

class Database {
 public:
  // Opens (creating if asked) the file; sets WAL, foreign keys and a busy
  // timeout. Fails with a message naming the file when it is not a database.
  static Result<Database> Open(const std::string& path, bool create);
  Database(Database&&) noexcept;
  Database& operator=(Database&&) noexcept;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database();

  Status Exec(std::string_view sql);  // one or more statements, no results
  Result<Statement> Prepare(std::string_view sql);
  // A statement prepared once per connection and reused. The lease resets it
  // when it goes out of scope: a statement left on a row would keep a read
  // snapshot open, and other connections' writes would then make this
  // connection's next BEGIN IMMEDIATE fail with SQLITE_BUSY. Not for
  // concurrent use (callers serialise access to the connection).
  Result<CachedStatement> Cached(const std::string& sql);
  int64_t LastInsertRowId() const;
  int Changes() const;
  std::string LastError() const;
  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

 private:
  Database(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_ = nullptr;
  std::string path_;
  std::map<std::string, std::unique_ptr<Statement>> cache_;
};

// A prepared statement. Bind parameters are 1-based; column indexes 0-based.
class Statement {
 public:
  Statement(Statement&&) noexcept;
  Statement& operator=(Statement&&) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  Statement& Bind(int index, std::string_view text);
  Statement& Bind(int index, int64_t value);
  Statement& BindNull(int index);
  Statement& BindOptional(int index, const std::optional<std::string>& text);

  // Steps once: true when a row is available, false when done.
  Result<bool> Step();
  // Steps to completion (for statements without results).
  Status Run();
  void Reset();

  std::string Text(int col) const;
  int64_t Int(int col) const;
  bool IsNull(int col) const;

 private:
  friend class Database;
  Statement(sqlite3_stmt* stmt, sqlite3* db) : stmt_(stmt), db_(db) {}
  sqlite3_stmt* stmt_ = nullptr;
  sqlite3* db_ = nullptr;
};

// Steps a statement to its end, turning each row into a T with `read`
// (a callable taking const Statement&). `read` returns a T, or a Result<T>
// when a row can be refused: its error then ends the read and is returned.
template <class T, class Read>
Result<std::vector<T>> ReadAll(Statement& statement, Read read) {
  std::vector<T> out;
  while (true) {
    auto row = statement.Step();
    if (!row) return std::unexpected(row.error());
    if (!*row) return out;
    if constexpr (std::is_same_v<std::invoke_result_t<Read&, const Statement&>, Result<T>>) {
      auto value = read(static_cast<const Statement&>(statement));
      if (!value) return std::unexpected(value.error());
      out.push_back(std::move(*value));
    } else {
      out.push_back(read(static_cast<const Statement&>(statement)));
    }
  }
}

// A borrowed cached statement; resets it (and clears its bindings) on
// destruction. Move-only.
class CachedStatement {
 public:
  explicit CachedStatement(Statement* statement) : statement_(statement) {}
  CachedStatement(CachedStatement&& o) noexcept : statement_(o.statement_) {
    o.statement_ = nullptr;
  }
  CachedStatement& operator=(CachedStatement&&) = delete;
  CachedStatement(const CachedStatement&) = delete;
  CachedStatement& operator=(const CachedStatement&) = delete;
  ~CachedStatement() {
    if (statement_) statement_->Reset();
  }
  Statement* operator->() const { return statement_; }
  Statement& operator*() const { return *statement_; }

 private:
  Statement* statement_;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back on destruction unless committed.
class Transaction {
 public:
  static Result<Transaction> Begin(Database& db);
  Transaction(Transaction&& other) noexcept : db_(other.db_) { other.db_ = nullptr; }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();
  Status Commit();

 private:
  explicit Transaction(Database* db) : db_(db) {}
  Database* db_;
};

}  // namespace gitopsd::sqlite
