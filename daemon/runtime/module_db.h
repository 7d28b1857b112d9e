// A room of the daemon that keeps its own tables in the state database.
// Each room (runtime resources, release runs, ...) opens its own connection
// to <stateDir>/state.db and owns a numbered list of migrations, recorded in
// the shared table `schema_versions (module, version)`; the sync store keeps
// its own version in PRAGMA user_version. A database whose recorded version
// for the module is newer than the code knows is refused.
//
// Rooms keep their state changes atomic within their own tables (each change
// one transaction); what crosses rooms is recorded first and re-verified
// after a restart, never assumed.
#pragma once
#include <string>
#include <vector>

#include "sync/sqlite.h"
#include "sync/status.h"

namespace gitopsd::runtime {

// Opens the database at `path` and brings `module`'s tables up to
// migrations.size(): migration i takes version i to i + 1. Append only.
Result<sqlite::Database> OpenModuleDatabase(const std::string& path, const std::string& module,
                                            const std::vector<std::string>& migrations);

}  // namespace gitopsd::runtime
