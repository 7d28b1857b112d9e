// gitopsd's command line: `serve`, `validate` and `version`. Only argument
// parsing lives here (CLI11 stays in this one file); the work is in
// daemon/serve.cc and daemon/validate.cc.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "daemon/config.h"
#include "daemon/serve.h"
#include "daemon/validate.h"

namespace {

constexpr const char* kDescription =
    "gitopsd keeps a control plane equal to the JSON objects committed in Git repositories\n"
    "(templates, release flows, preview templates) and serves them over an HTTP API.";

constexpr const char* kServeFooter = R"(Examples:
  gitopsd serve                                  # uses /etc/gitopsd/gitopsd.json
  gitopsd serve --config ./gitopsd.json
  gitopsd serve --repo ./my-repo --poll-interval 5s   # quick mode, no config file

Quick mode syncs one repository; its name is the URL's last segment, and state goes
to ./.gitopsd-state unless --state-dir says otherwise. Stop with SIGTERM or Ctrl-C
(running jobs and services go on; the next start adopts them). SIGHUP reloads the
configuration file (repositories, secrets, tokens, log level); a bad one is refused
and the running configuration stays.
Logs go to stdout; under systemd (JOURNAL_STREAM names stdout) each line carries its
syslog priority (<6> info, <4> warn, <3> error) and no time, which the journal adds.
Exit codes: 0 stopped cleanly, 1 runtime failure (state database, listen address),
2 bad configuration or usage.)";

constexpr const char* kValidateFooter = R"(Folders are walked recursively for *.json. A file's kind comes from its "kind" key,
else from a templates/, release-flows/ or previews/ folder in its path.
Exit codes: 0 no problem, 1 problems found, 2 usage error.
Examples:
  gitopsd validate .gitops
  gitopsd validate --format github .gitops/release-flows/prod.json)";

int Main(int argc, char** argv) {
  CLI::App app{kDescription, "gitopsd"};
  app.require_subcommand(1);

  gitopsd::daemon::ServeRequest serve;
  gitopsd::daemon::QuickOptions quick;
  std::string config_path;
  CLI::App* serve_cmd = app.add_subcommand("serve", "Run the daemon: sync repositories and serve the API");
  serve_cmd->footer(kServeFooter);
  auto* config_opt = serve_cmd->add_option(
      "-c,--config", config_path,
      "Configuration file (JSON, see schemas/config.schema.json); default " +
          std::string(gitopsd::daemon::kDefaultConfigPath));
  auto* repo_opt = serve_cmd->add_option(
      "--repo", quick.repo, "Quick mode: sync this repository URL or local path, no config file");
  repo_opt->excludes(config_opt);
  serve_cmd->add_option("--branch", quick.branch, "Quick mode: branch to follow")
      ->capture_default_str()->needs(repo_opt);
  serve_cmd->add_option("--listen", quick.listen, "Quick mode: HTTP API address host:port")
      ->capture_default_str()->needs(repo_opt);
  serve_cmd->add_option("--state-dir", quick.state_dir,
                        "Quick mode: state folder (default ./.gitopsd-state)")
      ->needs(repo_opt);
  serve_cmd->add_option("--poll-interval", quick.poll_interval,
                        "Quick mode: time between fetches, e.g. 500ms, 30s, 5m (default 60s)")
      ->needs(repo_opt);
  serve_cmd->add_option("--api-tokens-file", quick.api_tokens_file,
                        "Quick mode: API tokens file enabling writes")
      ->needs(repo_opt);
  serve_cmd->add_option("--log-level", serve.log_level,
                        "trace, debug, info, warn, error, critical or off (overrides log.level "
                        "of the configuration; default info)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  serve_cmd->add_option("--log-format", serve.log_format,
                        "text or json: one JSON object a line (overrides log.format of the "
                        "configuration; default text)")
      ->check(CLI::IsMember({"text", "json"}));

  gitopsd::daemon::ValidateOptions validate;
  CLI::App* validate_cmd =
      app.add_subcommand("validate", "Check object files offline and print each problem");
  validate_cmd->footer(kValidateFooter);
  validate_cmd->add_option("paths", validate.paths, "Files or folders to check")->required();
  validate_cmd->add_option("--format", validate.format, "Output format: text or github")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "github"}));
  validate_cmd->add_option("--max-file-bytes", validate.max_file_bytes,
                           "Refuse files larger than this")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  validate_cmd->add_option("--max-depth", validate.max_depth, "Refuse deeper JSON nesting")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);

  app.add_subcommand("version", "Print the version");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help or the error
    return code == 0 ? 0 : gitopsd::daemon::kExitConfig;
  }

  if (app.got_subcommand("version")) {
    std::printf("gitopsd %s\n", GITOPSD_VERSION);
    return 0;
  }
  if (app.got_subcommand("validate")) return gitopsd::daemon::RunValidate(validate);
  if (!quick.repo.empty()) serve.quick = quick;
  if (!config_path.empty()) serve.config_path = config_path;
  return gitopsd::daemon::RunServe(serve);
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
