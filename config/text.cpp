// Message helpers for config errors: quoting values and suggesting the key that was meant.

#include "config/detail.hpp"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace sluice::config::detail {
namespace {

// Edit distance counting a swap of two neighbours as one edit ("bnid" -> "bind"), as typos
// usually are; case-insensitive. Keys and names are short, so the full table is fine.
std::size_t edit_distance(std::string_view a, std::string_view b) {
    const auto lower = [](char c) {
        return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    };
    std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
    for (std::size_t i = 0; i <= a.size(); ++i) {
        d[i][0] = i;
    }
    for (std::size_t j = 0; j <= b.size(); ++j) {
        d[0][j] = j;
    }
    for (std::size_t i = 1; i <= a.size(); ++i) {
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
                lower(a[i - 2]) == lower(b[j - 1])) {
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
            }
        }
    }
    return d[a.size()][b.size()];
}

} // namespace

std::string quote(std::string_view text) {
    std::string out = "\"";
    for (const char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
            out += buf;
        } else {
            out += c;
        }
    }
    out += '"';
    return out;
}

// Suggests the closest candidate when it is at most 2 edits away (1 for words of up to 4
// characters, where 2 edits would turn almost anything into anything) and no other candidate
// is as close, so the hint is never a coin toss.
std::string did_you_mean(std::string_view word, std::span<const std::string_view> candidates) {
    const std::size_t limit = word.size() <= 4 ? 1 : 2;
    std::string_view best;
    std::size_t best_distance = limit + 1;
    bool tie = false;
    for (const auto candidate : candidates) {
        const std::size_t d = edit_distance(word, candidate);
        if (d < best_distance) {
            best = candidate;
            best_distance = d;
            tie = false;
        } else if (d == best_distance) {
            tie = true;
        }
    }
    if (best.empty() || tie) {
        return {};
    }
    return " (did you mean " + quote(best) + "?)";
}

} // namespace sluice::config::detail
