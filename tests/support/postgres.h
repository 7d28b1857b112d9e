// A throwaway PostgreSQL cluster for integration tests: initdb into a
// TempDir, the server in the foreground on a free 127.0.0.1 port (its Unix
// socket in the same folder), fsync off.
//
// What callers can rely on:
//  - Start() returns once pg_isready answers, or fails with the server's log;
//    it never hangs. Unavailable() says why a server cannot run here
//    (binaries or the `postgres` user missing), for GITOPSD_START_OR_SKIP.
//  - As root, everything server-side runs as the `postgres` user through
//    runuser (initdb refuses root); otherwise as the current user.
//  - TCP connections need the password (scram-sha-256), so tests can check
//    what a wrong password does; the Unix socket is trusted.
//  - Stop() (and the destructor) runs `pg_ctl -m immediate stop`, then makes
//    sure the process group is gone; the folder is removed afterwards.
#pragma once
#include <map>
#include <optional>
#include <string>

#include "sync/status.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::test {

class PostgresServer {
 public:
  PostgresServer();
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  static std::string Unavailable();
  Status Start();
  void Stop();

  // The admin connection (superuser, scram password over TCP).
  std::string host() const { return "127.0.0.1"; }
  int port() const { return port_; }
  std::string user() const { return "postgres"; }
  const std::string& password() const { return password_; }
  std::string admin_database() const { return "postgres"; }
  // The folder holding psql, pg_dump, pg_restore of the same version.
  const std::string& bin_dir() const { return bin_dir_; }
  // PGHOST, PGPORT, PGUSER, PGPASSWORD for client tools.
  std::map<std::string, std::string> ClientEnv() const;

  // psql -X -A -t -v ON_ERROR_STOP=1 -d <database> -c <sql> (argv, no shell):
  // unaligned, tuples only, so "SELECT count(*) ..." prints just the number.
  CommandResult Psql(const std::string& database, const std::string& sql) const;
  std::string Log() const;

 private:
  TempDir dir_{"pg"};
  std::string bin_dir_;
  std::string password_;
  int port_ = -1;
  std::optional<Process> server_;
};

}  // namespace gitopsd::test
