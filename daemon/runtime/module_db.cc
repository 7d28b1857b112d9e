#include "daemon/runtime/module_db.h"

namespace gitopsd::runtime {

Result<sqlite::Database> OpenModuleDatabase(const std::string& path, const std::string& module,
                                            const std::vector<std::string>& migrations) {
  auto db = sqlite::Database::Open(path, /*create=*/true);
  if (!db) return std::unexpected(db.error());
  if (auto s = db->Exec(
          "CREATE TABLE IF NOT EXISTS schema_versions (module TEXT PRIMARY KEY, version INTEGER "
          "NOT NULL)");
      !s) {
    return std::unexpected(s.error());
  }
  auto tx = sqlite::Transaction::Begin(*db);
  if (!tx) return std::unexpected(tx.error());
  int64_t version = 0;
  {
    auto st = db->Prepare("SELECT version FROM schema_versions WHERE module = ?1");
    if (!st) return std::unexpected(st.error());
    st->Bind(1, module);
    auto row = st->Step();
    if (!row) return std::unexpected(row.error());
    if (*row) version = st->Int(0);
  }
  const auto known = static_cast<int64_t>(migrations.size());
  if (version > known) {
    return Fail("state database " + path + " has version " + std::to_string(version) + " of the " +
                module + " tables, written by a newer gitopsd (this one knows up to " +
                std::to_string(known) + "); upgrade gitopsd or point stateDir elsewhere");
  }
  for (int64_t v = version; v < known; ++v) {
    if (auto s = db->Exec(migrations[static_cast<size_t>(v)]); !s) {
      return Fail("migrating the " + module + " tables to version " + std::to_string(v + 1) +
                  ": " + s.error().message);
    }
  }
  if (version < known) {
    auto up = db->Prepare(
        "INSERT INTO schema_versions (module, version) VALUES (?1, ?2) "
        "ON CONFLICT (module) DO UPDATE SET version = excluded.version");
    if (!up) return std::unexpected(up.error());
    if (auto s = up->Bind(1, module).Bind(2, known).Run(); !s) return std::unexpected(s.error());
  }
  // Statements are finalised above; the transaction releases the connection
  // before it is moved out.
  if (auto s = tx->Commit(); !s) return std::unexpected(s.error());
  return std::move(*db);
}

}  // namespace gitopsd::runtime
