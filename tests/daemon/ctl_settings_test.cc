// Where gitopsctl looks for its server, token and CA: flags over the
// environment over ctl.json over the defaults; the file's token kept for the
// file's server; files holding a token that others can read refused; the
// default unix socket used only when it answers.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <map>

#include "daemon/ctl/settings.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::test {
namespace {

using ctl::Flags;
using ctl::ResolveSettings;
using ctl::Settings;
using ctl::Sources;

class CtlSettingsTest : public ::testing::Test {
 protected:
  void SetUp() override { env_["XDG_CONFIG_HOME"] = dir_.path(); }

  Sources MakeSources() {
    return Sources{[this](const char* name) {
                     auto it = env_.find(name);
                     return it == env_.end() ? std::string() : it->second;
                   },
                   dir_.Sub("no-daemon.sock")};
  }

  // Writes ctl.json with `mode`.
  void WriteFile(const std::string& text, mode_t mode = 0600) {
    ::mkdir(dir_.Sub("gitopsd").c_str(), 0700);
    ASSERT_TRUE(WriteTextFile(FilePath(), text));
    ASSERT_EQ(::chmod(FilePath().c_str(), mode), 0);
  }
  std::string FilePath() { return dir_.Sub("gitopsd/ctl.json"); }

  Settings Resolve(const Flags& flags = {}) {
    auto s = ResolveSettings(flags, MakeSources());
    EXPECT_TRUE(s.has_value()) << s.error().message;
    return s ? *s : Settings{};
  }

  std::string Error(const Flags& flags = {}) {
    auto s = ResolveSettings(flags, MakeSources());
    return s ? "<no error>" : s.error().message;
  }

  TempDir dir_{"ctl-settings"};
  std::map<std::string, std::string> env_;
};

TEST_F(CtlSettingsTest, WithNothingGivenItIsPlainHttpOnLoopbackWithoutAToken) {
  Settings s = Resolve();
  EXPECT_EQ(s.server, "http://127.0.0.1:7780");
  EXPECT_EQ(s.token, "");
  EXPECT_EQ(s.ca_file, "");
  EXPECT_NE(s.origin.find("no-daemon.sock"), std::string::npos) << "says why not the socket: " << s.origin;
}

TEST_F(CtlSettingsTest, TheDefaultSocketIsUsedOnlyWhileSomethingListensOnIt) {
  const std::string path = dir_.Sub("no-daemon.sock");
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  EXPECT_EQ(Resolve().server, "unix:" + path);
  ::close(fd);  // the file stays, nobody answers: a stale socket
  EXPECT_EQ(Resolve().server, "http://127.0.0.1:7780");
}

TEST_F(CtlSettingsTest, FlagBeatsEnvironmentBeatsFile) {
  WriteFile(R"({"server": "http://file:1", "token": "file-token", "caFile": "ca.pem"})");
  Settings from_file = Resolve();
  EXPECT_EQ(from_file.server, "http://file:1");
  EXPECT_EQ(from_file.token, "file-token");
  EXPECT_EQ(from_file.ca_file, dir_.Sub("gitopsd/ca.pem")) << "relative to the file";

  env_["GITOPSD_SERVER"] = "http://old-env:2";
  EXPECT_EQ(Resolve().server, "http://old-env:2") << "the older variable still works";
  env_["GITOPSD_URL"] = "http://env:3";
  env_["GITOPSD_TOKEN"] = "env-token";
  env_["GITOPSD_CACERT"] = "/env/ca.pem";
  Settings from_env = Resolve();
  EXPECT_EQ(from_env.server, "http://env:3") << "GITOPSD_URL over GITOPSD_SERVER";
  EXPECT_EQ(from_env.origin, "from $GITOPSD_URL");
  EXPECT_EQ(from_env.token, "env-token");
  EXPECT_EQ(from_env.ca_file, "/env/ca.pem");

  Flags flags;
  flags.server = "https://flag:4";
  flags.token = "flag-token";
  flags.ca_file = "/flag/ca.pem";
  Settings from_flags = Resolve(flags);
  EXPECT_EQ(from_flags.server, "https://flag:4");
  EXPECT_EQ(from_flags.origin, "from --server");
  EXPECT_EQ(from_flags.token, "flag-token");
  EXPECT_EQ(from_flags.ca_file, "/flag/ca.pem");

  ASSERT_TRUE(WriteTextFile(dir_.Sub("token.txt"), "from-a-file\n"));
  Flags token_file;
  token_file.token_file = dir_.Sub("token.txt");
  EXPECT_EQ(Resolve(token_file).token, "from-a-file") << "--token-file over $GITOPSD_TOKEN";
}

TEST_F(CtlSettingsTest, TheFilesTokenGoesOnlyToTheFilesServer) {
  WriteFile(R"({"server": "https://ops.example:7780", "token": "secret"})");
  env_["GITOPSD_URL"] = "http://elsewhere:1";
  EXPECT_EQ(Resolve().token, "") << "another server never gets the file's token";
  env_["GITOPSD_URL"] = "https://ops.example:7780";
  EXPECT_EQ(Resolve().token, "secret") << "the same server named another way does";

  WriteFile(R"({"token": "for-the-default"})");
  env_.erase("GITOPSD_URL");
  EXPECT_EQ(Resolve().token, "for-the-default") << "no server in the file: the default's token";
  Flags flags;
  flags.server = "http://10.0.0.9:7780";
  EXPECT_EQ(Resolve(flags).token, "");
}

TEST_F(CtlSettingsTest, AFileHoldingATokenThatOthersCanReadIsRefused) {
  WriteFile(R"({"server": "http://h:1", "token": "secret"})", 0644);
  const std::string error = Error();
  EXPECT_NE(error.find("other users can read it"), std::string::npos) << error;
  EXPECT_NE(error.find("chmod 600 " + FilePath()), std::string::npos) << error;

  // Without a token the file may be world-readable.
  WriteFile(R"({"server": "http://h:1"})", 0644);
  EXPECT_EQ(Resolve().server, "http://h:1");

  // A tokenFile is held to the same rule; relative paths are the file's.
  ASSERT_TRUE(WriteTextFile(dir_.Sub("gitopsd/token"), "tok\n"));
  ASSERT_EQ(::chmod(dir_.Sub("gitopsd/token").c_str(), 0604), 0);
  WriteFile(R"({"server": "http://h:1", "tokenFile": "token"})", 0644);
  EXPECT_NE(Error().find(dir_.Sub("gitopsd/token") + " holds the token"), std::string::npos)
      << Error();
  ASSERT_EQ(::chmod(dir_.Sub("gitopsd/token").c_str(), 0640), 0);
  EXPECT_EQ(Resolve().token, "tok");
}

TEST_F(CtlSettingsTest, ABadFileIsAnErrorNamingTheLine) {
  WriteFile("{\n  \"server\": \"http://h:1\",\n  \"sever\": \"x\"\n}\n");
  EXPECT_NE(Error().find(FilePath() + ":3:"), std::string::npos) << Error();
  EXPECT_NE(Error().find("unknown key \"sever\""), std::string::npos) << Error();
  WriteFile("{\"server\": ");
  EXPECT_NE(Error().find(FilePath() + ":1:"), std::string::npos) << Error();
  WriteFile(R"({"token": "a", "tokenFile": "b"})");
  EXPECT_NE(Error().find("not both"), std::string::npos) << Error();
}

TEST_F(CtlSettingsTest, TheFileIsFoundThroughXdgConfigHomeElseHome) {
  EXPECT_EQ(ctl::CtlConfigPath([](const char* n) {
              return std::string(n) == "HOME" ? "/home/a" : "";
            }),
            "/home/a/.config/gitopsd/ctl.json");
  EXPECT_EQ(ctl::CtlConfigPath([](const char* n) {
              return std::string(n) == "XDG_CONFIG_HOME" ? "/x" : "/home/a";
            }),
            "/x/gitopsd/ctl.json");
}

}  // namespace
}  // namespace gitopsd::test
