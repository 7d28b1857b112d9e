// The API's transports on a real daemon: HTTPS with a certificate openssl
// makes for the test (gitopsctl verifying it, refusing a server its CA does
// not vouch for, a plain-HTTP client getting nothing), start-up errors for a
// bad certificate or key, and the unix socket (mode 0660 whatever the umask,
// a stale file replaced, a live one left alone, gone after a clean stop,
// writes without a token while TCP still wants one).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetSSL.h>
#include <Poco/StreamCopier.h>

#include <cstring>
#include <filesystem>

#include "tests/daemon/write_fixture.h"

namespace gitopsd::test {
namespace {

namespace fs = std::filesystem;

// GET over HTTPS trusting `ca_file`; status 0 when no answer came.
int HttpsStatus(int port, const std::string& path, const std::string& ca_file) {
  try {
    Poco::Net::initializeSSL();
    Poco::Net::Context::Ptr context = new Poco::Net::Context(
        Poco::Net::Context::TLS_CLIENT_USE, "", "", ca_file, Poco::Net::Context::VERIFY_RELAXED);
    Poco::Net::HTTPSClientSession session("localhost", static_cast<Poco::UInt16>(port), context);
    session.setTimeout(Poco::Timespan(10, 0));
    Poco::Net::HTTPRequest request("GET", path, Poco::Net::HTTPMessage::HTTP_1_1);
    session.sendRequest(request);
    Poco::Net::HTTPResponse response;
    std::string body;
    Poco::StreamCopier::copyToString(session.receiveResponse(response), body);
    return static_cast<int>(response.getStatus());
  } catch (const Poco::Exception&) {
    return 0;
  }
}

// Leaves a socket file at `path` that nothing listens on any more, as a
// daemon killed with -9 would.
bool MakeStaleSocket(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
                  ::listen(fd, 1) == 0;
  ::close(fd);
  return ok;
}

class TransportTest : public WriteFixture {
 protected:
  // The fixture's configuration with `top` added at its top level.
  std::string Config(const std::string& top) {
    return "{\n  \"stateDir\": \"@STATE@\",\n  \"listen\": \"127.0.0.1:@PORT@\",\n"
           "  \"apiTokensFile\": \"" + dir_.Sub("tokens.json") + "\",\n" + top +
           "  \"repositories\": [{\"name\": \"shop\", \"url\": \"" + repo_.file_url() +
           "\", \"pollInterval\": \"1h\", \"sync\": {\"writeBack\": true}}],\n"
           "  \"log\": {\"level\": \"debug\"}\n}\n";
  }

  // A self-signed certificate (its own CA) for `names`: <name>.pem and
  // <name>.key in the test's folder.
  void MakeCertificate(const std::string& name,
                       const std::string& names = "DNS:localhost,IP:127.0.0.1") {
    auto r = RunCommand({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                         "/CN=gitopsd test", "-addext", "subjectAltName=" + names, "-keyout",
                         dir_.Sub(name + ".key"), "-out", dir_.Sub(name + ".pem")});
    ASSERT_TRUE(r.ok()) << r.output;
  }

  std::string TlsConfig(const std::string& cert, const std::string& key) {
    return Config("  \"tls\": {\"certFile\": \"" + cert + "\", \"keyFile\": \"" + key + "\"},\n");
  }

  std::string HttpsUrl(const std::string& host = "localhost") {
    return "https://" + host + ":" + std::to_string(daemon_.port());
  }

  CommandResult Ctl(const std::vector<std::string>& args,
                    std::map<std::string, std::string> env = {}) {
    env.try_emplace("XDG_CONFIG_HOME", dir_.path());
    return RunGitopsctl(args, env, dir_.path());
  }

  // Starts a second daemon on `config` and waits for it to exit (it must
  // fail to start); its exit code, and its output in *output.
  int FailedStartCode(const std::string& config, std::string* output) {
    TempDir other{"transport-other"};
    DaemonUnderTest second(other.path());
    EXPECT_FALSE(second.StartWithConfig(config)) << "it must not start";
    auto code = WaitForExit(second.process(), std::chrono::seconds(10));
    *output = second.Output();
    return code.value_or(-1);
  }
};

TEST_F(TransportTest, GitopsctlTalksHttpsAndVerifiesTheServersCertificate) {
  MakeCertificate("server");
  MakeCertificate("stranger");
  ASSERT_TRUE(daemon_.StartWithConfig(TlsConfig("server.pem", "server.key")));
  const std::string ca = dir_.Sub("server.pem");
  ASSERT_TRUE(WaitUntil([&] { return HttpsStatus(daemon_.port(), "/readyz", ca) == 200; }))
      << daemon_.Output();

  auto status = Ctl({"--server", HttpsUrl(), "--cacert", ca, "status"});
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_TRUE(Contains(status.output, "shop")) << status.output;
  auto by_address = Ctl({"--server", HttpsUrl("127.0.0.1"), "--cacert", ca, "get", "templates"});
  EXPECT_EQ(by_address.exit_code, 0) << by_address.output;

  // A write over TLS, with the token, and the CA from ctl.json.
  ASSERT_TRUE(fs::create_directories(dir_.Sub("gitopsd")));
  ASSERT_TRUE(WriteTextFile(dir_.Sub("gitopsd/ctl.json"),
                            "{\"server\": \"" + HttpsUrl() + "\", \"caFile\": \"../server.pem\"}"));
  ASSERT_TRUE(WriteTextFile(dir_.Sub("templates/web.json"), TemplateJson("web", "over-tls")));
  auto applied = Ctl({"apply", "-f", dir_.Sub("templates/web.json")}, {{"GITOPSD_TOKEN", kWriteToken}});
  EXPECT_EQ(applied.exit_code, 0) << applied.output << daemon_.Output();
  EXPECT_TRUE(Contains(applied.output, "Template/web: revision 2")) << applied.output;

  // A CA that did not sign the server's certificate, or none at all: refused, exit 3.
  auto wrong_ca = Ctl({"--server", HttpsUrl(), "--cacert", dir_.Sub("stranger.pem"), "status"});
  EXPECT_EQ(wrong_ca.exit_code, 3) << wrong_ca.output;
  EXPECT_TRUE(Contains(wrong_ca.output, "TLS handshake failed")) << wrong_ca.output;
  EXPECT_TRUE(Contains(wrong_ca.output, "--cacert")) << wrong_ca.output;
  auto system_cas = Ctl({"--server", HttpsUrl(), "status"}, {{"XDG_CONFIG_HOME", dir_.Sub("none")}});
  EXPECT_EQ(system_cas.exit_code, 3) << system_cas.output;
  // Only when asked not to check.
  auto insecure = Ctl({"--server", HttpsUrl(), "--insecure", "status"},
                      {{"XDG_CONFIG_HOME", dir_.Sub("none")}});
  EXPECT_EQ(insecure.exit_code, 0) << insecure.output;

  // Plain HTTP to the TLS port gets no answer.
  EXPECT_EQ(daemon_.Get("/healthz").status, 0);
  auto plain = Ctl({"--server", daemon_.url(), "status"});
  EXPECT_EQ(plain.exit_code, 3) << plain.output;
  EXPECT_TRUE(Contains(plain.output, "https://")) << "hints at https:\n" << plain.output;
  auto missing_ca = Ctl({"--server", HttpsUrl(), "--cacert", dir_.Sub("nope.pem"), "status"});
  EXPECT_EQ(missing_ca.exit_code, 2) << missing_ca.output;
}

TEST_F(TransportTest, ACertificateForAnotherNameIsRefusedEvenFromATrustedCa) {
  MakeCertificate("elsewhere", "DNS:other.example");
  ASSERT_TRUE(daemon_.StartWithConfig(TlsConfig("elsewhere.pem", "elsewhere.key")));
  const std::string ca = dir_.Sub("elsewhere.pem");
  for (const std::string host : {"localhost", "127.0.0.1"}) {
    auto r = Ctl({"--server", HttpsUrl(host), "--cacert", ca, "runs"});
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_TRUE(Contains(r.output, "the certificate must name " + host)) << r.output;
  }
  auto insecure = Ctl({"--server", HttpsUrl(), "--insecure", "runs"});
  EXPECT_EQ(insecure.exit_code, 0) << insecure.output;
}

TEST_F(TransportTest, OnlyTls12AndLaterIsSpoken) {
  MakeCertificate("server");
  ASSERT_TRUE(daemon_.StartWithConfig(TlsConfig("server.pem", "server.key")));
  const std::string connect = "127.0.0.1:" + std::to_string(daemon_.port());
  auto tls12 = RunCommand({"sh", "-c", "openssl s_client -connect " + connect + " -tls1_2 </dev/null"});
  EXPECT_EQ(tls12.exit_code, 0) << tls12.output;
  auto tls11 = RunCommand({"sh", "-c", "openssl s_client -connect " + connect +
                                           " -tls1_1 -cipher DEFAULT@SECLEVEL=0 </dev/null"});
  EXPECT_NE(tls11.exit_code, 0) << tls11.output;
  EXPECT_TRUE(Contains(tls11.output, "alert protocol version")) << "the server refused it:\n" << tls11.output;
}

TEST_F(TransportTest, ABadCertificateOrKeyIsAConfigurationError) {
  MakeCertificate("server");
  MakeCertificate("stranger");
  std::string output;
  EXPECT_EQ(FailedStartCode(TlsConfig(dir_.Sub("server.pem"), dir_.Sub("missing.key")), &output), 2);
  EXPECT_TRUE(Contains(output, "tls.keyFile: cannot read " + dir_.Sub("missing.key"))) << output;

  ASSERT_TRUE(WriteTextFile(dir_.Sub("junk.pem"), "not a certificate\n"));
  EXPECT_EQ(FailedStartCode(TlsConfig(dir_.Sub("junk.pem"), dir_.Sub("server.key")), &output), 2);
  EXPECT_TRUE(Contains(output, "cannot use the certificate " + dir_.Sub("junk.pem"))) << output;

  EXPECT_EQ(FailedStartCode(TlsConfig(dir_.Sub("server.pem"), dir_.Sub("stranger.key")), &output), 2);
  EXPECT_TRUE(Contains(output, dir_.Sub("stranger.key"))) << output;

  auto encrypted = RunCommand({"openssl", "pkey", "-in", dir_.Sub("server.key"), "-aes256",
                               "-passout", "pass:secret", "-out", dir_.Sub("locked.key")});
  ASSERT_TRUE(encrypted.ok()) << encrypted.output;
  EXPECT_EQ(FailedStartCode(TlsConfig(dir_.Sub("server.pem"), dir_.Sub("locked.key")), &output), 2);
  EXPECT_TRUE(Contains(output, "is protected by a passphrase")) << output;

  EXPECT_EQ(FailedStartCode(Config("  \"tls\": {\"certFile\": \"server.pem\"},\n"), &output), 2);
  EXPECT_TRUE(Contains(output, "keyFile")) << output;
}

TEST_F(TransportTest, TheUnixSocketTakesWritesWithoutATokenAndTcpStillWantsOne) {
  const std::string socket = dir_.Sub("api.sock");
  ASSERT_TRUE(MakeStaleSocket(socket));
  const mode_t old_umask = ::umask(0);  // the daemon inherits it: the mode must not
  auto started = daemon_.StartWithConfig(Config("  \"unixSocket\": \"api.sock\",\n"));
  ::umask(old_umask);
  ASSERT_TRUE(started);
  ASSERT_TRUE(daemon_.WaitReady()) << daemon_.Output();

  struct stat st{};
  ASSERT_EQ(::stat(socket.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);

  ASSERT_TRUE(WriteTextFile(dir_.Sub("templates/web.json"), TemplateJson("web", "local")));
  auto local = Ctl({"--server", "unix:" + socket, "apply", "-f", dir_.Sub("templates/web.json")});
  EXPECT_EQ(local.exit_code, 0) << local.output << daemon_.Output();
  EXPECT_EQ(local.output, "Template/web: revision 2, pushed " + RemoteHead().substr(0, 7) + "\n");
  EXPECT_EQ(Description("web"), "local");
  EXPECT_TRUE(Contains(daemon_.Output(), "unix socket, uid " + std::to_string(::getuid())))
      << "the log names the local user:\n" << daemon_.Output();

  auto by_env = Ctl({"--json", "status"}, {{"GITOPSD_URL", "unix://" + socket}});
  EXPECT_EQ(by_env.exit_code, 0) << by_env.output;
  EXPECT_TRUE(json::Parse(by_env.output).has_value()) << by_env.output;

  ASSERT_TRUE(WriteTextFile(dir_.Sub("templates/web.json"), TemplateJson("web", "remote")));
  auto tcp = Ctl({"--server", daemon_.url(), "apply", "-f", dir_.Sub("templates/web.json")});
  EXPECT_EQ(tcp.exit_code, 1) << tcp.output;
  EXPECT_TRUE(Contains(tcp.output, "HTTP 401")) << tcp.output;
  EXPECT_EQ(Description("web"), "local");

  // A second daemon cannot take a socket someone listens on, nor replace a
  // file that is not a socket.
  std::string output;
  EXPECT_EQ(FailedStartCode(Config("  \"unixSocket\": \"" + socket + "\",\n"), &output), 1);
  EXPECT_TRUE(Contains(output, "a process is listening on " + socket)) << output;
  ASSERT_TRUE(WriteTextFile(dir_.Sub("plain-file"), "keep me\n"));
  EXPECT_EQ(FailedStartCode(Config("  \"unixSocket\": \"" + dir_.Sub("plain-file") + "\",\n"), &output), 1);
  EXPECT_TRUE(Contains(output, "is not a socket")) << output;
  EXPECT_EQ(ReadTextFile(dir_.Sub("plain-file")), "keep me\n");
  EXPECT_TRUE(fs::exists(socket)) << "the failed start left the live socket alone";
  const std::string too_long = "/tmp/" + std::string(100, 's') + ".sock";
  EXPECT_EQ(FailedStartCode(Config("  \"unixSocket\": \"" + too_long + "\",\n"), &output), 2);
  EXPECT_TRUE(Contains(output, "too long for a unix socket")) << output;

  // A clean stop removes the socket.
  EXPECT_EQ(daemon_.process().Stop(), 0);
  EXPECT_FALSE(fs::exists(socket));
}

}  // namespace
}  // namespace gitopsd::test
