// API tokens: only hashes on disk, roles, and a comparison that looks at
// every entry.
#include "daemon/tokens.h"

#include <gtest/gtest.h>

#include "tests/support/temp_dir.h"

namespace gitopsd::daemon {
namespace {

std::string Entry(const std::string& name, const std::string& role, const std::string& token) {
  return "{\"name\": \"" + name + "\", \"role\": \"" + role + "\", \"sha256\": \"" +
         ToHex(HashToken(token)) + "\"}";
}

TEST(TokensTest, HashIsSha256Hex) {
  // printf %s abc | sha256sum
  EXPECT_EQ(ToHex(HashToken("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(TokensTest, TokensMapToTheirRoles) {
  auto store = TokenStore::LoadText(
      "tokens.json", "[" + Entry("ci", "write", "w-token") + ",\n" +
                         Entry("dash", "read", "r-token") + ",\n" +
                         Entry("ops", "write", "other") + "]");
  ASSERT_TRUE(store.has_value()) << store.error().message;
  EXPECT_EQ(store->size(), 3u);
  auto ci = store->Authenticate("w-token");
  ASSERT_TRUE(ci);
  EXPECT_EQ(ci->name, "ci");
  EXPECT_EQ(ci->role, Role::kWrite);
  auto dash = store->Authenticate("r-token");
  ASSERT_TRUE(dash);
  EXPECT_EQ(dash->name, "dash");
  EXPECT_EQ(dash->role, Role::kRead);
  auto ops = store->Authenticate("other");  // the last entry is found too
  ASSERT_TRUE(ops);
  EXPECT_EQ(ops->name, "ops");
  EXPECT_FALSE(store->Authenticate("w-toke"));
  EXPECT_FALSE(store->Authenticate(""));
  EXPECT_FALSE(store->Authenticate(ToHex(HashToken("w-token")))) << "the hash is not the token";
}

TEST(TokensTest, UpperCaseHexIsAccepted) {
  std::string hex = ToHex(HashToken("t"));
  for (char& c : hex) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto store = TokenStore::LoadText("t.json", R"([{"name": "a", "role": "read", "sha256": ")" + hex + "\"}]");
  ASSERT_TRUE(store.has_value()) << store.error().message;
  EXPECT_TRUE(store->Authenticate("t"));
}

TEST(TokensTest, ConstantTimeEqualComparesWholeBuffers) {
  const Sha256 a = HashToken("a");
  Sha256 b = a;
  EXPECT_TRUE(ConstantTimeEqual(a, b));
  b[31] ^= 1;  // differs only in the last byte
  EXPECT_FALSE(ConstantTimeEqual(a, b));
  b = a;
  b[0] ^= 0x80;  // differs only in the first byte
  EXPECT_FALSE(ConstantTimeEqual(a, b));
  EXPECT_FALSE(ConstantTimeEqual(std::span<const uint8_t>(a).first(31), a));
}

TEST(TokensTest, MistakesNameTheFileAndPosition) {
  auto bad_role = TokenStore::LoadText(
      "t.json", "[\n  {\"name\": \"a\", \"role\": \"admin\", \"sha256\": \"" +
                    ToHex(HashToken("x")) + "\"}]");
  ASSERT_FALSE(bad_role.has_value());
  EXPECT_NE(bad_role.error().message.find("t.json:2:"), std::string::npos)
      << bad_role.error().message;
  EXPECT_NE(bad_role.error().message.find("role"), std::string::npos);

  auto bad_hash = TokenStore::LoadText("t.json", R"([{"name": "a", "role": "read", "sha256": "abc"}])");
  ASSERT_FALSE(bad_hash.has_value());
  EXPECT_NE(bad_hash.error().message.find("sha256"), std::string::npos);

  auto unknown = TokenStore::LoadText("t.json", R"([{"name": "a", "role": "read", "token": "x"}])");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_NE(unknown.error().message.find("token"), std::string::npos);

  EXPECT_FALSE(TokenStore::LoadText("t.json", R"({"name": "a"})").has_value());
  EXPECT_FALSE(TokenStore::LoadText("t.json", "[").has_value());
  EXPECT_FALSE(TokenStore::LoadText("t.json", "[" + Entry("a", "read", "x") + "," +
                                                  Entry("b", "write", "x") + "]")
                   .has_value())
      << "two entries with one hash are ambiguous";
}

TEST(TokensTest, AMissingFileIsNamed) {
  test::TempDir dir("tokens");
  auto store = TokenStore::LoadFile(dir.Sub("absent.json"));
  ASSERT_FALSE(store.has_value());
  EXPECT_NE(store.error().message.find("absent.json"), std::string::npos);
  ASSERT_TRUE(test::WriteTextFile(dir.Sub("t.json"), "[" + Entry("ci", "write", "tok") + "]"));
  auto ok = TokenStore::LoadFile(dir.Sub("t.json"));
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_TRUE(ok->Authenticate("tok"));
}

}  // namespace
}  // namespace gitopsd::daemon
