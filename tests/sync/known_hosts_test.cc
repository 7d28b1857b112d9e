// known_hosts parsing and host key checks, against lines written the way
// OpenSSH writes them (including `ssh-keygen -H` hashing).
#include "sync/known_hosts.h"

#include <gtest/gtest.h>

#include <sstream>

#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::git {
namespace {

// An SSH wire-format key blob: string type, string key material.
std::string KeyBlob(const std::string& type, char fill) {
  auto ssh_string = [](const std::string& s) {
    std::string out(4, '\0');
    out[0] = static_cast<char>((s.size() >> 24) & 0xFF);
    out[1] = static_cast<char>((s.size() >> 16) & 0xFF);
    out[2] = static_cast<char>((s.size() >> 8) & 0xFF);
    out[3] = static_cast<char>(s.size() & 0xFF);
    return out + s;
  };
  return ssh_string(type) + ssh_string(std::string(32, fill));
}

std::string Line(const std::string& hosts, const std::string& blob) {
  return hosts + " " + KeyTypeOfBlob(blob) + " " + Base64Encode(blob) + " comment\n";
}

const std::string kKeyA = KeyBlob("ssh-ed25519", 'a');
const std::string kKeyB = KeyBlob("ssh-ed25519", 'b');
const std::string kEcdsa = KeyBlob("ecdsa-sha2-nistp256", 'c');

TEST(KnownHostsTest, PlainHostListMatchesEveryNameOnPort22Only) {
  KnownHosts hosts = KnownHosts::Parse(Line("git.example.com,192.0.2.7", kKeyA));
  EXPECT_EQ(hosts.Check("git.example.com", 22, "ssh-ed25519", kKeyA), HostKeyVerdict::kMatch);
  EXPECT_EQ(hosts.Check("GIT.example.COM", 22, "ssh-ed25519", kKeyA), HostKeyVerdict::kMatch);
  EXPECT_EQ(hosts.Check("192.0.2.7", 22, "ssh-ed25519", kKeyA), HostKeyVerdict::kMatch);
  EXPECT_EQ(hosts.Check("git.example.com", 2222, "ssh-ed25519", kKeyA), HostKeyVerdict::kUnknownHost);
  EXPECT_EQ(hosts.Check("other.example.com", 22, "ssh-ed25519", kKeyA), HostKeyVerdict::kUnknownHost);
}

TEST(KnownHostsTest, BracketedHostMatchesOnlyItsPort) {
  KnownHosts hosts = KnownHosts::Parse(Line("[git.example.com]:2222", kKeyA));
  EXPECT_EQ(hosts.Check("git.example.com", 2222, "ssh-ed25519", kKeyA), HostKeyVerdict::kMatch);
  EXPECT_EQ(hosts.Check("git.example.com", 22, "ssh-ed25519", kKeyA), HostKeyVerdict::kUnknownHost);
  EXPECT_EQ(hosts.Check("git.example.com", 2223, "ssh-ed25519", kKeyA), HostKeyVerdict::kUnknownHost);
}

TEST(KnownHostsTest, ADifferentKeyOfTheSameTypeIsAMismatch) {
  KnownHosts hosts = KnownHosts::Parse(Line("git.example.com", kKeyA));
  EXPECT_EQ(hosts.Check("git.example.com", 22, "ssh-ed25519", kKeyB), HostKeyVerdict::kMismatch);
}

TEST(KnownHostsTest, AKeyOfAnotherTypeIsUnknownNotAccepted) {
  KnownHosts hosts = KnownHosts::Parse(Line("git.example.com", kEcdsa));
  EXPECT_EQ(hosts.Check("git.example.com", 22, "ssh-ed25519", kKeyA), HostKeyVerdict::kUnknownHost);
  EXPECT_EQ(hosts.KeyTypesFor("git.example.com", 22), std::vector<std::string>{"ecdsa-sha2-nistp256"});
}

TEST(KnownHostsTest, WildcardsAndNegation) {
  KnownHosts hosts = KnownHosts::Parse(Line("*.example.com,!evil.example.com,git?.test", kKeyA));
  EXPECT_EQ(hosts.Check("a.example.com", 22, "ssh-ed25519", kKeyA), HostKeyVerdict::kMatch);
  EXPECT_EQ(hosts.Check("git1.test", 22, "ssh-ed25519", kKeyA), HostKeyVerdict::kMatch);
  EXPECT_EQ(hosts.Check("evil.example.com", 22, "ssh-ed25519", kKeyA), HostKeyVerdict::kUnknownHost);
  EXPECT_EQ(hosts.Check("git12.test", 22, "ssh-ed25519", kKeyA), HostKeyVerdict::kUnknownHost);
}

TEST(KnownHostsTest, CommentsBlankAndMalformedLinesAreSkipped) {
  std::string text = "# a comment\n\n   \nonly-two fields\nbad.example.com ssh-ed25519 !!notbase64!!\n" +
                     Line("good.example.com", kKeyA) + "@cert-authority *.example.com " +
                     KeyTypeOfBlob(kKeyB) + " " + Base64Encode(kKeyB) + "\n";
  KnownHosts hosts = KnownHosts::Parse(text);
  EXPECT_EQ(hosts.size(), 1u);
  EXPECT_EQ(hosts.Check("good.example.com", 22, "ssh-ed25519", kKeyA), HostKeyVerdict::kMatch);
  // A CA line does not make its key acceptable as a host key.
  EXPECT_EQ(hosts.Check("x.example.com", 22, "ssh-ed25519", kKeyB), HostKeyVerdict::kUnknownHost);
}

TEST(KnownHostsTest, RevokedKeyIsRefusedEvenWhenAnotherLineAcceptsIt) {
  std::string text = Line("git.example.com", kKeyA) + "@revoked * " + KeyTypeOfBlob(kKeyA) + " " +
                     Base64Encode(kKeyA) + "\n";
  KnownHosts hosts = KnownHosts::Parse(text);
  EXPECT_EQ(hosts.Check("git.example.com", 22, "ssh-ed25519", kKeyA), HostKeyVerdict::kRevoked);
  // Revoking one key leaves other hosts' keys alone.
  KnownHosts other = KnownHosts::Parse(Line("git.example.com", kKeyB) + "@revoked * ssh-ed25519 " +
                                       Base64Encode(kKeyA) + "\n");
  EXPECT_EQ(other.Check("git.example.com", 22, "ssh-ed25519", kKeyB), HostKeyVerdict::kMatch);
}

TEST(KnownHostsTest, HashedEntriesWrittenBySshKeygenMatch) {
  test::TempDir dir("known-hosts");
  std::string file = dir.Sub("known_hosts");
  ASSERT_TRUE(test::WriteTextFile(
      file, Line("git.example.com", kKeyA) + Line("[127.0.0.1]:2222", kKeyB)));
  test::CommandResult hashed = test::RunCommand({"ssh-keygen", "-H", "-f", file});
  if (hashed.exit_code < 0 && hashed.output.find("ssh-keygen") != std::string::npos) {
    GTEST_SKIP() << "ssh-keygen is not available: " << hashed.output;
  }
  ASSERT_TRUE(hashed.ok()) << hashed.output;
  std::string text = test::ReadTextFile(file);
  ASSERT_NE(text.find("|1|"), std::string::npos) << text;
  ASSERT_EQ(text.find("git.example.com"), std::string::npos) << "names should be hashed:\n" << text;

  auto hosts = KnownHosts::Load(file);
  ASSERT_TRUE(hosts) << hosts.error().message;
  EXPECT_EQ(hosts->Check("git.example.com", 22, "ssh-ed25519", kKeyA), HostKeyVerdict::kMatch);
  EXPECT_EQ(hosts->Check("127.0.0.1", 2222, "ssh-ed25519", kKeyB), HostKeyVerdict::kMatch);
  EXPECT_EQ(hosts->Check("127.0.0.1", 2222, "ssh-ed25519", kKeyA), HostKeyVerdict::kMismatch);
  EXPECT_EQ(hosts->Check("127.0.0.1", 22, "ssh-ed25519", kKeyB), HostKeyVerdict::kUnknownHost);
}

TEST(KnownHostsTest, FingerprintMatchesSshKeygen) {
  test::TempDir dir("fingerprint");
  test::CommandResult keygen =
      test::RunCommand({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", dir.Sub("key")});
  if (!keygen.ok()) GTEST_SKIP() << "ssh-keygen is not available: " << keygen.output;
  std::istringstream pub(test::ReadTextFile(dir.Sub("key.pub")));
  std::string type, base64;
  pub >> type >> base64;
  std::string blob;
  ASSERT_TRUE(Base64Decode(base64, &blob));
  EXPECT_EQ(KeyTypeOfBlob(blob), "ssh-ed25519");

  test::CommandResult listed = test::RunCommand({"ssh-keygen", "-l", "-E", "sha256", "-f", dir.Sub("key.pub")});
  ASSERT_TRUE(listed.ok()) << listed.output;
  EXPECT_NE(listed.output.find(SshFingerprint(blob) + " "), std::string::npos)
      << SshFingerprint(blob) << " vs " << listed.output;
}

TEST(KnownHostsTest, LoadingAMissingFileFailsNamingIt) {
  auto hosts = KnownHosts::Load("/nonexistent/known_hosts");
  ASSERT_FALSE(hosts);
  EXPECT_NE(hosts.error().message.find("/nonexistent/known_hosts"), std::string::npos);
}

TEST(KnownHostsTest, Base64RoundTripsAndRejectsGarbage) {
  for (std::string bytes : {std::string(""), std::string("f"), std::string("fo"), std::string("foo"),
                            std::string("foob"), std::string("\0\xff\x10", 3)}) {
    std::string decoded;
    ASSERT_TRUE(Base64Decode(Base64Encode(bytes), &decoded));
    EXPECT_EQ(decoded, bytes);
  }
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("fo", /*padding=*/false), "Zm8");
  std::string out;
  EXPECT_FALSE(Base64Decode("Zm8=x", &out));
  EXPECT_FALSE(Base64Decode("Z!8=", &out));
}

}  // namespace
}  // namespace gitopsd::git
