#include "bench/response_parser.hpp"

#include <algorithm>
#include <charconv>

namespace sluice::bench {
namespace {

constexpr std::size_t max_chunk_line = 4096;

char lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                              [](char x, char y) { return lower(x) == lower(y); });
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

// Calls `fn` with each trimmed, non-empty comma-separated token of `value`.
template <class Fn> void for_each_token(std::string_view value, Fn&& fn) {
    while (!value.empty()) {
        const auto comma = value.find(',');
        const std::string_view token = trim(value.substr(0, comma));
        if (!token.empty()) {
            fn(token);
        }
        if (comma == std::string_view::npos) {
            break;
        }
        value.remove_prefix(comma + 1);
    }
}

} // namespace

void response_parser::reset(bool head_request) noexcept {
    *this = response_parser{};
    head_request_ = head_request;
}

void response_parser::fail(failure why) noexcept {
    result_ = state::error;
    failure_ = why;
    keep_alive_ = false;
}

std::size_t response_parser::parse(std::string_view data) noexcept {
    std::size_t used = 0;
    while (result_ == state::need_more) {
        const std::string_view rest = data.substr(used);
        switch (phase_) {
        case phase::body_length:
        case phase::chunk_data: {
            const auto n =
                static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, rest.size()));
            used += n;
            remaining_ -= n;
            body_bytes_ += n;
            if (remaining_ != 0) {
                return used;
            }
            phase_ = phase_ == phase::chunk_data ? phase::chunk_data_end : phase::complete;
            break;
        }
        case phase::body_until_close:
            body_bytes_ += rest.size();
            return used + rest.size();
        case phase::complete:
            result_ = state::done;
            break;
        default: {
            // Line-oriented phases: wait for a whole line.
            const bool in_header = phase_ == phase::status_line || phase_ == phase::headers;
            const std::size_t limit = in_header ? max_header_bytes - header_bytes_ : max_chunk_line;
            const auto newline = rest.find('\n');
            if (newline == std::string_view::npos) {
                if (rest.size() > limit) {
                    fail(in_header ? failure::header_too_big : failure::chunk_size);
                }
                return used;
            }
            if (newline + 1 > limit) {
                fail(in_header ? failure::header_too_big : failure::chunk_size);
                return used;
            }
            std::string_view line = rest.substr(0, newline);
            if (!line.empty() && line.back() == '\r') {
                line.remove_suffix(1);
            }
            used += newline + 1;
            if (in_header) {
                header_bytes_ += newline + 1;
            }
            switch (phase_) {
            case phase::status_line:
                on_status_line(line);
                break;
            case phase::headers:
                if (line.empty()) {
                    on_header_end();
                } else {
                    on_header_line(line);
                }
                break;
            case phase::chunk_size:
                on_chunk_size_line(line);
                break;
            case phase::chunk_data_end:
                if (!line.empty()) {
                    fail(failure::chunk_size);
                } else {
                    phase_ = phase::chunk_size;
                }
                break;
            case phase::trailers:
                if (line.empty()) {
                    phase_ = phase::complete;
                }
                break;
            default:
                break;
            }
        }
        }
    }
    return used;
}

void response_parser::on_eof() noexcept {
    if (result_ != state::need_more) {
        return;
    }
    if (phase_ == phase::body_until_close) {
        phase_ = phase::complete;
        result_ = state::done;
        return;
    }
    fail(failure::truncated);
}

// "HTTP/1.x NNN reason": sets the status and the version's keep-alive default.
bool response_parser::on_status_line(std::string_view line) noexcept {
    if (line.size() < 12 || !line.starts_with("HTTP/1.") || !is_digit(line[7]) || line[8] != ' ' ||
        !is_digit(line[9]) || !is_digit(line[10]) || !is_digit(line[11]) ||
        (line.size() > 12 && line[12] != ' ')) {
        fail(failure::status_line);
        return false;
    }
    minor_version_ = static_cast<unsigned>(line[7] - '0');
    status_ =
        static_cast<unsigned>((line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0'));
    if (status_ < 100) {
        fail(failure::status_line);
        return false;
    }
    keep_alive_ = minor_version_ >= 1;
    phase_ = phase::headers;
    return true;
}

// One "Name: value" line; only the framing headers matter here.
bool response_parser::on_header_line(std::string_view line) noexcept {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 || line[colon - 1] == ' ' ||
        line[colon - 1] == '\t' || line.front() == ' ' || line.front() == '\t') {
        fail(failure::header_line);
        return false;
    }
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
        std::uint64_t length = 0;
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
        if (value.empty() || ec != std::errc{} || end != value.data() + value.size() ||
            (has_length_ && length != content_length_)) {
            fail(failure::content_length);
            return false;
        }
        has_length_ = true;
        content_length_ = length;
    } else if (iequals(name, "transfer-encoding")) {
        // Chunked only when it is the final coding (RFC 9112 6.3).
        chunked_ = false;
        for_each_token(value,
                       [this](std::string_view token) { chunked_ = iequals(token, "chunked"); });
        if (!chunked_) {
            keep_alive_ = false; // another final coding: the body runs to close
        }
    } else if (iequals(name, "connection")) {
        for_each_token(value, [this](std::string_view token) {
            if (iequals(token, "close")) {
                keep_alive_ = false;
            } else if (iequals(token, "keep-alive") && minor_version_ == 0) {
                keep_alive_ = true;
            }
        });
    }
    return true;
}

// Chooses how the body is delimited (RFC 9112 6.3), in that order.
void response_parser::on_header_end() noexcept {
    if (status_ >= 100 && status_ < 200 && status_ != 101) {
        // Interim response (100 Continue, 103 Early Hints): the real one follows.
        const bool head = head_request_;
        reset(head);
        return;
    }
    if (status_ == 101) {
        keep_alive_ = false;
        phase_ = phase::complete;
    } else if (head_request_ || status_ == 204 || status_ == 304) {
        phase_ = phase::complete;
    } else if (chunked_) {
        phase_ = phase::chunk_size;
    } else if (has_length_) {
        remaining_ = content_length_;
        phase_ = remaining_ == 0 ? phase::complete : phase::body_length;
    } else {
        keep_alive_ = false;
        phase_ = phase::body_until_close;
    }
}

// "HEX[;ext]": the next chunk's size; 0 starts the trailers.
bool response_parser::on_chunk_size_line(std::string_view line) noexcept {
    const std::string_view digits = trim(line.substr(0, line.find(';')));
    std::uint64_t size = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), size, 16);
    if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size()) {
        fail(failure::chunk_size);
        return false;
    }
    if (size == 0) {
        phase_ = phase::trailers;
    } else {
        remaining_ = size;
        phase_ = phase::chunk_data;
    }
    return true;
}

} // namespace sluice::bench
