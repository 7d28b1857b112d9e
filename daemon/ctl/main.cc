// gitopsctl, the client of gitopsd's HTTP API. Only argument parsing lives
// here (CLI11 stays in this one file); the commands are in commands.cc.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "daemon/ctl/commands.h"

namespace {

constexpr const char* kDescription =
    "gitopsctl talks to a running gitopsd: sync status, objects, edits written back to Git,\n"
    "conflicts, runs of release flows and templates, the runtime's resources, and API tokens.";

constexpr const char* kFooter = R"(Settings, the first found wins (flag > environment > file > default):
  server  --server, $GITOPSD_URL (or the older $GITOPSD_SERVER), "server" in the file; else
          unix:/run/gitopsd/api.sock when it accepts a connection, else http://127.0.0.1:7780
  token   --token or --token-file, $GITOPSD_TOKEN, "token" or "tokenFile" in the file (sent
          only to the file's own server, or to the default one when the file names none)
  CA      --cacert, $GITOPSD_CACERT, "caFile" in the file; else the system's CAs
  file    $XDG_CONFIG_HOME/gitopsd/ctl.json (~/.config/gitopsd/ctl.json), e.g.
          {"server": "https://ops.example.com:7780", "tokenFile": "token", "caFile": "ca.pem"};
          refused while it holds a token other users can read (chmod 600 it)
A server is http://HOST:PORT, https://HOST:PORT (the certificate is verified; --insecure
skips that) or unix:/PATH. Over the unix socket no token is needed: writes are allowed to
whoever the socket's file permissions let in (mode 0660: gitopsd's user and group).
KIND is templates, release-flows or previews (or Template, ReleaseFlow, PreviewTemplate);
get also takes "run ID", runs, services, jobs, addons, builds and backups.
Exit codes: 0 ok; 1 refused by the server, a run that did not succeed (--wait), or a file
that does not validate; 2 usage or configuration error; 3 gitopsd cannot be reached
(connection refused, TLS handshake or certificate failure, timeout).
Examples:
  gitopsctl status
  gitopsctl --server https://ops.example.com:7780 --cacert ca.pem --json status
  sudo -u gitopsd gitopsctl --server unix:/run/gitopsd/api.sock run production
  gitopsctl get release-flows
  gitopsctl get templates web
  gitopsctl apply -f .gitops/release-flows/production.json
  EDITOR=nano gitopsctl edit release-flows production
  gitopsctl conflicts resolve 3 --take git
  gitopsctl run production --arg NOTIFY_URL=http://127.0.0.1:9/hook --wait
  gitopsctl logs 12 --follow
  gitopsctl rollback 12 --restore-backup
  gitopsctl get services
  gitopsctl token create ci --role write)";

int Main(int argc, char** argv) {
  using namespace gitopsd::ctl;
  CLI::App app{kDescription, "gitopsctl"};
  app.footer(kFooter);
  app.require_subcommand(1);
  app.fallthrough();  // global flags may also follow the command (inherited by subcommands)
  Globals g;
  app.add_option("--server", g.server,
                 "gitopsd: http://HOST:PORT, https://HOST:PORT or unix:/PATH");
  auto* token_opt = app.add_option("--token", g.token, "API token (prefer $GITOPSD_TOKEN)");
  app.add_option("--token-file", g.token_file, "Read the API token from this file")
      ->excludes(token_opt);
  app.add_option("--cacert", g.ca_file, "https: trust the CA certificate(s) in this PEM file");
  app.add_flag("--insecure", g.insecure,
               "https: do not verify the server's certificate (anyone on the path can read "
               "the token)");
  app.add_flag("--json", g.json, "Print JSON instead of tables");

  auto* status = app.add_subcommand(
      "status", "The whole picture: repositories (applied commit, last sync, errors), open "
                "conflicts, runs in progress and the node each is at, live previews");

  std::string kind, name;
  auto* get = app.add_subcommand(
      "get", "List the objects of a kind, print one object, a run's node tree, or the runtime's "
             "resources");
  get->add_option("KIND", kind,
                  "templates, release-flows, previews, run, runs, services, jobs, addons, builds "
                  "or backups")
      ->required();
  get->add_option("NAME", name, "The object to print as JSON (for run: the run's id)");

  StartRunOptions run_options;
  auto* run = app.add_subcommand("run", "Start a run of a release flow (or of a template)");
  run->add_option("FLOW", run_options.flow, "The release flow's name (a template's with --template)")
      ->required();
  run->add_option("--arg", run_options.args, "An argument as NAME=VALUE (repeatable)");
  run->add_flag("--template", run_options.template_flow, "FLOW is a template");
  run->add_flag("--wait", run_options.wait,
                "Wait until the run concludes; exit 1 unless it succeeded");

  std::string flow;
  auto* runs = app.add_subcommand("runs", "List runs, newest first");
  runs->add_option("--flow", flow, "Only the runs of this flow");

  std::string run_id;
  bool follow = false;
  auto* logs = app.add_subcommand(
      "logs", "Print a run's logs, node by node (--json: the run with each node's log)");
  logs->add_option("RUN", run_id, "The run's id")->required();
  logs->add_flag("-f,--follow", follow, "Keep printing until the run concludes");

  bool restore_backup = false;
  auto* rollback = app.add_subcommand(
      "rollback", "Redeploy the builds a concluded run released (a new run of kind rollback)");
  rollback->add_option("RUN", run_id, "The run to roll back to")->required();
  rollback->add_flag("--restore-backup", restore_backup,
                     "Also restore the backups the run took, before redeploying");

  auto* cancel = app.add_subcommand("cancel", "Cancel a run");
  cancel->add_option("RUN", run_id, "The run's id")->required();
  auto* approve = app.add_subcommand("approve", "Approve the run's nodes waiting for approval");
  approve->add_option("RUN", run_id, "The run's id")->required();

  bool all_previews = false, skip_teardown = false;
  std::string preview_name;
  auto* previews = app.add_subcommand("previews", "List the preview environments");
  previews->add_flag("--all", all_previews, "Include previews that are gone");
  auto* teardown = app.add_subcommand("teardown", "Tear a preview environment down");
  teardown->add_option("NAME", preview_name, "The preview's name")->required();
  teardown->add_flag("--skip-teardown", skip_teardown, "Do not run the template's teardownSpec first");

  ApplyOptions apply_options;
  auto* apply = app.add_subcommand(
      "apply", "Validate a file locally, then create or replace its object (written back to Git)");
  apply->add_option("-f,--file", apply_options.file, "The object's JSON file")->required();
  apply->add_option("--repository", apply_options.repository,
                    "Repository for a new object (default: the first with write-back on)");
  apply->add_option("--kind", apply_options.kind,
                    "Kind when neither the file's \"kind\" nor its folder says");

  auto* edit = app.add_subcommand(
      "edit", "Open an object in $VISUAL/$EDITOR, validate it, and save it with If-Match");
  edit->add_option("KIND", kind, "templates, release-flows or previews")->required();
  edit->add_option("NAME", name, "The object to edit")->required();

  auto* del = app.add_subcommand("delete", "Delete an object (its file is removed in a commit)");
  del->add_option("KIND", kind, "templates, release-flows or previews")->required();
  del->add_option("NAME", name, "The object to delete")->required();

  bool all = false;
  auto* conflicts = app.add_subcommand("conflicts", "List conflicts between Git and API edits");
  conflicts->add_flag("--all", all, "Include resolved conflicts");
  conflicts->require_subcommand(0, 1);
  int64_t conflict_id = 0;
  std::string take, resolve_file;
  auto* resolve = conflicts->add_subcommand("resolve", "Resolve a conflict");
  resolve->add_option("ID", conflict_id, "The conflict's id")->required()->check(
      CLI::PositiveNumber);
  auto* take_opt = resolve->add_option("--take", take, "Keep the git or the api version")
                       ->check(CLI::IsMember({"git", "api"}));
  auto* file_opt = resolve->add_option("-f,--file", resolve_file, "Write this object instead");
  take_opt->excludes(file_opt);
  file_opt->excludes(take_opt);

  auto* token = app.add_subcommand("token", "API tokens");
  token->require_subcommand(1);
  std::string token_name, role;
  auto* create = token->add_subcommand(
      "create", "Print a new random token and the tokens-file line with its hash (offline)");
  create->add_option("NAME", token_name, "Who the token is for, e.g. ci")->required();
  create->add_option("--role", role, "read or write")
      ->required()
      ->check(CLI::IsMember({"read", "write"}));

  try {
    app.parse(argc, argv);
    if (resolve->parsed() && take.empty() && resolve_file.empty()) {
      throw CLI::ValidationError("resolve", "give --take git|api or -f FILE");
    }
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }

  if (status->parsed()) return RunStatus(g);
  if (get->parsed()) return RunGet(g, kind, name);
  if (run->parsed()) return RunStartRun(g, run_options);
  if (runs->parsed()) return RunListRuns(g, flow);
  if (logs->parsed()) return RunLogs(g, run_id, follow);
  if (rollback->parsed()) return RunRollback(g, run_id, restore_backup);
  if (cancel->parsed()) return RunAct(g, run_id, "cancel");
  if (approve->parsed()) return RunAct(g, run_id, "approve");
  if (previews->parsed()) return RunListPreviews(g, all_previews);
  if (teardown->parsed()) return RunTeardown(g, preview_name, skip_teardown);
  if (apply->parsed()) return RunApply(g, apply_options);
  if (edit->parsed()) return RunEdit(g, kind, name);
  if (del->parsed()) return RunDelete(g, kind, name);
  if (resolve->parsed()) return RunResolve(g, conflict_id, take, resolve_file);
  if (conflicts->parsed()) return RunConflicts(g, all);
  if (create->parsed()) return RunTokenCreate(g, token_name, role);
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
