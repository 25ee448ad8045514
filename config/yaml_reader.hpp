#pragma once
// Internal to config/ (used by load.cpp only): typed reading of yaml-cpp nodes that records
// where every value was written and collects errors instead of stopping at the first one.
// With load.cpp and yaml_reader.cpp, the only place yaml-cpp is seen.

#include "config/detail.hpp"

#include <yaml-cpp/yaml.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::config::detail {

// yaml-cpp's 0-based mark as a 1-based position; a null mark (no source) becomes 1:1.
position position_of(const YAML::Mark& mark);

// Key paths: join("upstreams[0]", "name") == "upstreams[0].name"; join("", "workers") ==
// "workers"; index("listeners", 2) == "listeners[2]".
std::string join(const std::string& path, std::string_view key);
std::string index(const std::string& path, std::size_t i);

// What a node is, for "expected X, got Y" messages: a quoted scalar, "a sequence",
// "a mapping" or "nothing".
std::string describe(const YAML::Node& node);

// A value in the document together with its key path and where it was written.
struct item {
    YAML::Node node;
    std::string path;
    position where;
};

// A mapping after its keys were checked: the known keys in document order, first occurrence.
struct mapping {
    struct entry {
        std::string key;
        position key_where;
        item value;
    };
    std::string path;
    position where;
    std::vector<entry> entries;

    const item* find(std::string_view key) const {
        for (const auto& e : entries) {
            if (e.key == key) {
                return &e.value;
            }
        }
        return nullptr;
    }
};

using keys = std::initializer_list<std::string_view>;

// Reads values of one document into `out`, appending an error for each that is wrong. Each
// as_* function reports its own error and returns nullopt on failure; each read function sets
// its `out` only when the key is present and valid, so defaults survive errors.
class yaml_reader {
  public:
    yaml_reader(std::string file, config& out) : file_(std::move(file)), out_(out) {}

    std::vector<error>& errors() { return errors_; }

  protected:
    void fail(position where, std::string key, std::string message) {
        errors_.push_back({file_, where.line, where.column, std::move(key), std::move(message)});
    }
    void fail(const item& at, std::string message) { fail(at.where, at.path, std::move(message)); }

    std::optional<mapping> as_mapping(const item& it, keys known);
    std::optional<std::vector<item>> as_sequence(const item& it);
    std::optional<std::string> as_string(const item& it);
    std::optional<long long> as_integer(const item& it, long long min, long long max);
    std::optional<bool> as_boolean(const item& it);
    std::optional<duration> as_duration(const item& it, bool allow_zero);
    std::optional<std::uint64_t> as_size(const item& it);
    std::optional<host_port> as_host_port(const item& it, bool allow_port_zero);
    const item* require(const mapping& m, std::string_view key);

    void read(const mapping& m, std::string_view key, std::string& out);
    void read(const mapping& m, std::string_view key, bool& out);
    void read(const mapping& m, std::string_view key, int& out, long long min, long long max);
    void read(const mapping& m, std::string_view key, duration& out, bool allow_zero);
    void read_size(const mapping& m, std::string_view key, std::uint64_t& out);
    void read_non_empty(const mapping& m, std::string_view key, std::string& out, bool required);

    std::string file_;
    config& out_; // also receives the position of every value read, by key path
    std::vector<error> errors_;
};

} // namespace sluice::config::detail
