// CURVE key files: made, kept private, never overwritten, read back and checked.
#include <troupe/adapters/zmq/keys.hpp>

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace troupe;

namespace {

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("troupe-keys-" + std::to_string(::getpid()) + "-" +
                                               std::to_string(reinterpret_cast<std::uintptr_t>(this)));
  ~TempDir() { fs::remove_all(path); }
};

}  // namespace

TEST_CASE("a key pair is written privately and read back", "[keys]") {
  TempDir dir;
  auto pair = keys::generate();
  REQUIRE(pair);
  CHECK(pair->public_key.size() == 40);
  CHECK(pair->secret_key.size() == 40);
  REQUIRE(keys::write(dir.path.string(), "orders", *pair));

  struct stat st {};
  REQUIRE(::stat((dir.path / "orders.key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(::stat(dir.path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);

  auto back = keys::load(dir.path.string(), "orders");
  REQUIRE(back);
  CHECK(back->public_key == pair->public_key);
  CHECK(back->secret_key == pair->secret_key);
  CHECK(keys::encode(keys::decode(pair->public_key)) == pair->public_key);
  CHECK(keys::decode(pair->public_key).size() == 32);

  SECTION("an existing key is never overwritten") {
    auto other = keys::generate();
    REQUIRE(other);
    auto r = keys::write(dir.path.string(), "orders", *other);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message(), Catch::Contains("orders.pub: already exists; not overwriting a key"));
    CHECK(keys::load(dir.path.string(), "orders")->secret_key == pair->secret_key);
  }
  SECTION("a public key file that does not match its secret key is refused") {
    fs::remove(dir.path / "orders.pub");
    std::ofstream(dir.path / "orders.pub") << keys::generate()->public_key << "\n";
    auto r = keys::load(dir.path.string(), "orders");
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message(), Catch::Contains("does not match the secret key in orders.key"));
  }
  SECTION("a key of 40 characters outside the Z85 alphabet is refused") {
    fs::remove(dir.path / "orders.pub");
    std::ofstream(dir.path / "orders.pub") << std::string(40, '~') << "\n";
    auto r = keys::load(dir.path.string(), "orders");
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message(), Catch::Contains("orders.pub: not a Z85 CURVE key"));
  }
  SECTION("names that would leave the keys directory are refused") {
    CHECK_FALSE(keys::write(dir.path.string(), "../x", *pair));
    CHECK_FALSE(keys::write(dir.path.string(), ".hidden", *pair));
    CHECK_FALSE(keys::load(dir.path.string(), "a/b"));
  }
  SECTION("a damaged key file is named") {
    fs::remove(dir.path / "orders.key");
    std::ofstream(dir.path / "orders.key") << "# comment\nnot-a-key\n";
    fs::permissions(dir.path / "orders.key", fs::perms::owner_read | fs::perms::owner_write);
    auto r = keys::load(dir.path.string(), "orders");
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message(), Catch::Contains("orders.key: not a Z85 CURVE key (40 characters)"));
  }
}

TEST_CASE("a secret key file that others may read or write is refused, as ssh does", "[keys]") {
  TempDir dir;
  REQUIRE(keys::write(dir.path.string(), "orders", *keys::generate()));
  auto key = dir.path / "orders.key";
  SECTION("readable by others") {
    ::chmod(key.c_str(), 0644);
    auto r = keys::load(dir.path.string(), "orders");
    REQUIRE_FALSE(r);
    CHECK(r.error().message() == key.string() + ": readable by others (mode 0644): chmod 600 it");
  }
  SECTION("writable by the group") {
    ::chmod(key.c_str(), 0620);
    auto r = keys::load(dir.path.string(), "orders");
    REQUIRE_FALSE(r);
    CHECK(r.error().message() == key.string() + ": writable by others (mode 0620): chmod 600 it");
  }
  SECTION("0600 and 0400 are fine") {
    CHECK(keys::load(dir.path.string(), "orders"));
    ::chmod(key.c_str(), 0400);
    CHECK(keys::load(dir.path.string(), "orders"));
  }
}

TEST_CASE("keygen for a mesh makes only what is missing", "[keys]") {
  TempDir dir;
  Topology t;
  t.defaults.keys_dir = dir.path.string();
  for (const char* name : {"orders", "payments"}) {
    ServiceSpec s;
    s.name = name;
    t.services.push_back(s);
  }
  t.services.back().public_key = keys::generate()->public_key;  // held on another host
  ClientSpec tap;
  tap.name = "ops";
  tap.role = ClientSpec::Role::tap;
  t.clients.push_back(tap);

  // A host of a multi-host mesh: another host's identity is here as NAME.pub alone.
  ClientSpec remote;
  remote.name = "remote";
  t.clients.push_back(remote);
  fs::create_directories(dir.path);
  ::chmod(dir.path.c_str(), 0755);  // an existing directory keeps its mode
  std::ofstream(dir.path / "remote.pub") << keys::generate()->public_key << "\n";

  auto made = keys::make_missing(t);
  REQUIRE(made);
  CHECK(made->made == std::vector<std::string>{"orders", "ops"});
  CHECK(made->repaired.empty());
  CHECK_FALSE(fs::exists(dir.path / "remote.key"));
  struct stat st {};
  REQUIRE(::stat(dir.path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0755);
  auto again = keys::make_missing(t);
  REQUIRE(again);
  CHECK(again->made.empty());
  CHECK(again->repaired.empty());
  CHECK(keys::public_key(t, "payments").value() == t.services.back().public_key);
  CHECK(keys::public_key(t, "orders").value() == keys::load(dir.path.string(), "orders")->public_key);
}

TEST_CASE("keygen for a mesh derives a lost public key again from its secret key", "[keys]") {
  TempDir dir;
  Topology t;
  t.defaults.keys_dir = dir.path.string();
  ServiceSpec orders;
  orders.name = "orders";
  t.services.push_back(orders);
  auto pair = keys::generate();
  REQUIRE(keys::write(dir.path.string(), "orders", *pair));
  fs::remove(dir.path / "orders.pub");

  auto repaired = keys::make_missing(t);
  REQUIRE(repaired);
  CHECK(repaired->repaired == std::vector<std::string>{"orders"});
  CHECK(repaired->made.empty());
  CHECK(keys::public_key(t, "orders").value() == pair->public_key);
  CHECK(keys::load(dir.path.string(), "orders")->secret_key == pair->secret_key);

  SECTION("but not from a secret key others may read") {
    fs::remove(dir.path / "orders.pub");
    ::chmod((dir.path / "orders.key").c_str(), 0640);
    auto r = keys::make_missing(t);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message(), Catch::Contains("orders.key: readable by others (mode 0640): chmod 600 it"));
    CHECK_FALSE(fs::exists(dir.path / "orders.pub"));
  }
}
