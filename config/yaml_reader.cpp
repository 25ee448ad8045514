// Typed reading of yaml-cpp nodes with positions and collected errors; see yaml_reader.hpp.

#include "config/yaml_reader.hpp"

#include <algorithm>
#include <charconv>
#include <climits>

namespace sluice::config::detail {

position position_of(const YAML::Mark& mark) {
    if (mark.is_null()) {
        return {1, 1};
    }
    return {mark.line + 1, mark.column + 1};
}

std::string join(const std::string& path, std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string index(const std::string& path, std::size_t i) {
    return path + "[" + std::to_string(i) + "]";
}

// What a node is, for "expected X, got Y" messages.
std::string describe(const YAML::Node& node) {
    switch (node.Type()) {
    case YAML::NodeType::Scalar:
        return quote(node.Scalar());
    case YAML::NodeType::Sequence:
        return "a sequence";
    case YAML::NodeType::Map:
        return "a mapping";
    default:
        return "nothing";
    }
}

// Takes any node. Returns its entries when it is a mapping, after reporting (at the key) each
// unknown key (with a suggestion from `known`) and each repeated key; those entries are left
// out. Reports "expected a mapping" otherwise. Records the position of every entry's value:
// the value's mark, or the key's for an empty value, whose mark yaml-cpp puts at the next token.
std::optional<mapping> yaml_reader::as_mapping(const item& it, keys known) {
    if (!it.node.IsMap()) {
        fail(it, "expected a mapping, got " + describe(it.node));
        return std::nullopt;
    }
    const std::vector<std::string_view> candidates(known);
    mapping m{it.path, it.where, {}};
    for (const auto& pair : it.node) {
        const position key_where = position_of(pair.first.Mark());
        if (!pair.first.IsScalar()) {
            fail(key_where, it.path, "expected a string key, got " + describe(pair.first));
            continue;
        }
        const std::string& key = pair.first.Scalar();
        const std::string path = join(it.path, key);
        if (std::find(known.begin(), known.end(), key) == known.end()) {
            fail(key_where, path, "unknown key " + quote(key) + did_you_mean(key, candidates));
        } else if (m.find(key) != nullptr) {
            fail(key_where, path, "duplicate key " + quote(key));
        } else {
            const position where =
                pair.second.IsNull() ? key_where : position_of(pair.second.Mark());
            out_.positions.insert_or_assign(path, where);
            m.entries.push_back({key, key_where, item{pair.second, path, where}});
        }
    }
    return m;
}

// Takes any node. Returns its elements (recording their positions), or reports "expected a
// sequence".
std::optional<std::vector<item>> yaml_reader::as_sequence(const item& it) {
    if (!it.node.IsSequence()) {
        fail(it, "expected a sequence, got " + describe(it.node));
        return std::nullopt;
    }
    std::vector<item> items;
    for (const auto& element : it.node) {
        std::string path = index(it.path, items.size());
        const position where = element.IsNull() ? it.where : position_of(element.Mark());
        out_.positions.insert_or_assign(path, where);
        items.push_back(item{element, std::move(path), where});
    }
    return items;
}

std::optional<std::string> yaml_reader::as_string(const item& it) {
    if (!it.node.IsScalar()) {
        fail(it, "expected a string, got " + describe(it.node));
        return std::nullopt;
    }
    return it.node.Scalar();
}

// Takes a scalar of decimal digits with an optional '-' (quoted or not). Returns it when it is
// within [min, max]; reports "expected an integer" or the allowed range otherwise. A `max` of
// INT_MAX or more counts as no upper bound in messages, unless it is the bound exceeded.
std::optional<long long> yaml_reader::as_integer(const item& it, long long min, long long max) {
    if (!it.node.IsScalar()) {
        fail(it, "expected an integer, got " + describe(it.node));
        return std::nullopt;
    }
    const std::string& text = it.node.Scalar();
    long long value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (end != text.data() + text.size() || text.empty()) {
        fail(it, "expected an integer, got " + quote(text));
        return std::nullopt;
    }
    const bool below = ec == std::errc::result_out_of_range ? text.front() == '-' : value < min;
    const bool above = ec == std::errc::result_out_of_range ? text.front() != '-' : value > max;
    if (!below && !above) {
        return value;
    }
    const bool unbounded = max >= INT_MAX;
    if (unbounded && below) {
        fail(it, "must be at least " + std::to_string(min) + ", got " + text);
    } else if (unbounded) {
        fail(it, "must be at most " + std::to_string(max) + ", got " + text);
    } else {
        fail(it, "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                     ", got " + text);
    }
    return std::nullopt;
}

// Only true and false (any case YAML 1.2 allows): "yes"/"on" are YAML 1.1 and read as strings
// by most other tools, so accepting them would make the file mean different things.
std::optional<bool> yaml_reader::as_boolean(const item& it) {
    if (it.node.IsScalar()) {
        const std::string& text = it.node.Scalar();
        if (text == "true" || text == "True" || text == "TRUE") {
            return true;
        }
        if (text == "false" || text == "False" || text == "FALSE") {
            return false;
        }
    }
    fail(it, "expected a boolean (true or false), got " + describe(it.node));
    return std::nullopt;
}

std::optional<duration> yaml_reader::as_duration(const item& it, bool allow_zero) {
    const auto value = it.node.IsScalar() ? parse_duration(it.node.Scalar()) : std::nullopt;
    if (!value) {
        fail(it, "expected a duration like \"250ms\", \"5s\", \"2m\" or \"1h\", got " +
                     describe(it.node));
        return std::nullopt;
    }
    if (!allow_zero && value->count() == 0) {
        fail(it, "must be greater than 0s");
        return std::nullopt;
    }
    return value;
}

std::optional<std::uint64_t> yaml_reader::as_size(const item& it) {
    const auto value = it.node.IsScalar() ? parse_size(it.node.Scalar()) : std::nullopt;
    if (!value) {
        fail(it, "expected a size like \"512\", \"16KiB\" or \"1MiB\", got " + describe(it.node));
    }
    return value;
}

// Takes a "host:port" or "[v6]:port" scalar. Port 0 (an ephemeral port) makes sense for a bind
// only; where a connection is made to the address it is reported.
std::optional<host_port> yaml_reader::as_host_port(const item& it, bool allow_port_zero) {
    const auto value = it.node.IsScalar() ? parse_host_port(it.node.Scalar()) : std::nullopt;
    if (!value) {
        fail(it, "expected host:port, got " + describe(it.node));
        return std::nullopt;
    }
    if (!allow_port_zero && value->port == 0) {
        fail(it, "expected a port from 1 to 65535, got " + describe(it.node));
        return std::nullopt;
    }
    return value;
}

// Returns the value of `key`, or reports it missing (at the mapping, since the key is not
// there to point at) and returns nullptr.
const item* yaml_reader::require(const mapping& m, std::string_view key) {
    const item* found = m.find(key);
    if (found == nullptr) {
        fail(m.where, join(m.path, key), "missing required key " + quote(key));
    }
    return found;
}

void yaml_reader::read(const mapping& m, std::string_view key, std::string& out) {
    if (const item* it = m.find(key)) {
        if (auto v = as_string(*it)) {
            out = std::move(*v);
        }
    }
}

void yaml_reader::read(const mapping& m, std::string_view key, bool& out) {
    if (const item* it = m.find(key)) {
        if (const auto v = as_boolean(*it)) {
            out = *v;
        }
    }
}

void yaml_reader::read(const mapping& m, std::string_view key, int& out, long long min,
                       long long max) {
    if (const item* it = m.find(key)) {
        if (const auto v = as_integer(*it, min, std::min<long long>(max, INT_MAX))) {
            out = static_cast<int>(*v);
        }
    }
}

void yaml_reader::read(const mapping& m, std::string_view key, duration& out, bool allow_zero) {
    if (const item* it = m.find(key)) {
        if (const auto v = as_duration(*it, allow_zero)) {
            out = *v;
        }
    }
}

void yaml_reader::read_size(const mapping& m, std::string_view key, std::uint64_t& out) {
    if (const item* it = m.find(key)) {
        if (const auto v = as_size(*it)) {
            out = *v;
        }
    }
}

// Reads a string that must not be empty (names, file paths); reports it missing when
// `required` and it is absent.
void yaml_reader::read_non_empty(const mapping& m, std::string_view key, std::string& out,
                                 bool required) {
    const item* it = required ? require(m, key) : m.find(key);
    if (it == nullptr) {
        return;
    }
    if (auto v = as_string(*it)) {
        if (v->empty()) {
            fail(*it, "must not be empty");
        } else {
            out = std::move(*v);
        }
    }
}

} // namespace sluice::config::detail
