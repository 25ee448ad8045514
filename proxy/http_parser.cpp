#include "proxy/http_parser.hpp"

#include <algorithm>
#include <array>
#include <utility>
#include <bit>
#include <cstring>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sluice::proxy::http {
namespace {

// tchar (RFC 9110 5.6.2).
constexpr std::array<bool, 256> make_token_table() {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c)
        t[c] = true;
    for (int c = 'a'; c <= 'z'; ++c)
        t[c] = true;
    for (int c = 'A'; c <= 'Z'; ++c)
        t[c] = true;
    for (char c : std::string_view("!#$%&'*+-.^_`|~"))
        t[static_cast<unsigned char>(c)] = true;
    return t;
}
constexpr auto token_table = make_token_table();

bool is_token_char(char c) {
    return token_table[static_cast<unsigned char>(c)];
}

// field-vchar / obs-text / SP / HTAB: anything but controls (and DEL).
bool is_value_char(char c) {
    const auto u = static_cast<unsigned char>(c);
    return u == '\t' || (u >= 0x20 && u != 0x7f);
}

// The offset of the first byte in p[i..n) that is not a value character,
// or n. Sixteen bytes at a time where SSE2 is there: values are most of a
// head's bytes.
std::size_t skip_value_chars(const char* p, std::size_t i, std::size_t n) {
#if defined(__SSE2__)
    const __m128i flip = _mm_set1_epi8(static_cast<char>(0x80));
    const __m128i below_space = _mm_set1_epi8(static_cast<char>(0x20 ^ 0x80));
    const __m128i tab = _mm_set1_epi8('\t');
    const __m128i del = _mm_set1_epi8(0x7f);
    while (i + 16 <= n) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
        // Unsigned v < 0x20 (signed compare after flipping the top bit),
        // except HTAB; or DEL.
        const __m128i control = _mm_andnot_si128(
            _mm_cmpeq_epi8(v, tab), _mm_cmplt_epi8(_mm_xor_si128(v, flip), below_space));
        const __m128i bad = _mm_or_si128(control, _mm_cmpeq_epi8(v, del));
        const int mask = _mm_movemask_epi8(bad);
        if (mask != 0)
            return i + static_cast<std::size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
        i += 16;
    }
#endif
    while (i < n && is_value_char(p[i]))
        ++i;
    return i;
}

// The offset of the first byte in p[i..n) that is not a token character,
// or n. Where SSE2 is there, runs of the characters names are usually made
// of (letters, digits, '-') go sixteen at a time; the table decides the rest.
std::size_t skip_token_chars(const char* p, std::size_t i, std::size_t n) {
#if defined(__SSE2__)
    const auto in_range = [](__m128i v, char lo, char hi) {
        // Unsigned v - lo <= hi - lo, as "saturating subtract gives 0".
        const __m128i off = _mm_sub_epi8(v, _mm_set1_epi8(lo));
        return _mm_cmpeq_epi8(_mm_subs_epu8(off, _mm_set1_epi8(static_cast<char>(hi - lo))),
                              _mm_setzero_si128());
    };
    while (i + 16 <= n) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
        const __m128i letter = in_range(_mm_or_si128(v, _mm_set1_epi8(0x20)), 'a', 'z');
        const __m128i digit = in_range(v, '0', '9');
        const __m128i dash = _mm_cmpeq_epi8(v, _mm_set1_epi8('-'));
        const int common = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(letter, digit), dash));
        if (common != 0xffff) {
            i += static_cast<std::size_t>(__builtin_ctz(~static_cast<unsigned>(common)));
            break;
        }
        i += 16;
    }
#endif
    while (i < n && is_token_char(p[i]))
        ++i;
    return i;
}

// request-target characters: visible ASCII (no SP, no controls) and obs-text
// is not allowed in targets.
bool is_target_char(char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f;
}

char lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

std::string_view trim(std::string_view v) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
        v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
        v.remove_suffix(1);
    return v;
}

bool has_cr_or_lf(std::string_view v) {
    bool any = false;
    for (const char c : v)
        any |= (c == '\r') | (c == '\n');
    return any;
}

// Calls f(element) for each comma-separated, trimmed, non-empty element.
template <typename F> void for_each_list_element(std::string_view v, F&& f) {
    while (!v.empty()) {
        const auto comma = v.find(',');
        const auto element = trim(v.substr(0, comma));
        if (!element.empty())
            f(element);
        if (comma == std::string_view::npos)
            break;
        v.remove_prefix(comma + 1);
    }
}

bool parse_decimal(std::string_view v, std::uint64_t& out) {
    if (v.empty() || v.size() > 19)
        return false; // 19 digits cannot overflow
    std::uint64_t n = 0;
    for (char c : v) {
        if (c < '0' || c > '9')
            return false;
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    out = n;
    return true;
}

parse_status parse_version(std::string_view v, int& minor) {
    if (v.size() != 8 || v.substr(0, 7) != "HTTP/1.")
        return parse_status::bad_version;
    if (v[7] == '1')
        minor = 1;
    else if (v[7] == '0')
        minor = 0;
    else
        return parse_status::bad_version;
    return parse_status::ok;
}

// Parses the field lines between `p` and the end of the head (`lines` ends
// with the CRLF of the last field line, or is empty), filling out.fields and
// the framing facts. Shared by requests and responses.
parse_status parse_fields(std::string_view lines, message_head& out) {
    bool seen_length = false;
    bool seen_te = false;
    bool seen_host = false;
    // One pass per line: the name's token characters, the colon, the
    // value's characters, then the CRLF that must end it. A CR or LF
    // anywhere else is neither a token nor a value character, so a bare one
    // is refused here.
    while (!lines.empty()) {
        const char* const p = lines.data();
        const std::size_t n = lines.size();
        if (p[0] == ' ' || p[0] == '\t')
            return parse_status::obs_fold;

        const std::size_t i = skip_token_chars(p, 0, n);
        if (i == 0 || i == n)
            return parse_status::bad_field;
        if (p[i] == ' ' || p[i] == '\t')
            return parse_status::space_before_colon;
        if (p[i] != ':')
            return parse_status::bad_field;
        const std::size_t j = skip_value_chars(p, i + 1, n);
        if (j + 1 >= n || p[j] != '\r' || p[j + 1] != '\n')
            return parse_status::bad_field;
        const std::string_view name(p, i);
        const std::string_view raw_value(p + i + 1, j - i - 1);
        lines.remove_prefix(j + 2);
        const auto value = trim(raw_value);

        if (out.fields.size() == max_fields)
            return parse_status::too_many_fields;
        const auto id = classify_field_name(name);
        out.fields.push_back({name, value, id, static_cast<std::uint32_t>(j + 2)});

        switch (id) {
        case field_name::host:
            if (!seen_host) {
                // The first Host decides, even when empty: routing and
                // forwarding must agree on one.
                out.host = value;
                seen_host = true;
            }
            break;
        case field_name::expect:
            if (iequals(value, "100-continue"))
                out.expect_continue = true;
            break;
        case field_name::upgrade:
            out.upgrade = value;
            break;
        case field_name::connection:
            for_each_list_element(value, [&](std::string_view token) {
                if (iequals(token, "close"))
                    out.connection_close = true;
                else if (iequals(token, "keep-alive"))
                    out.connection_keep_alive = true;
                else if (iequals(token, "upgrade"))
                    out.connection_upgrade = true;
                else
                    out.connection_lists_fields = true;
            });
            break;
        case field_name::content_length: {
            // Repeated identical values (also as a list) are one length;
            // anything else is ambiguous framing.
            bool ok = true;
            bool any = false;
            for_each_list_element(value, [&](std::string_view element) {
                any = true;
                std::uint64_t n = 0;
                if (!parse_decimal(element, n) || (seen_length && n != out.content_length)) {
                    ok = false;
                    return;
                }
                out.content_length = n;
                seen_length = true;
            });
            if (!ok || !any)
                return parse_status::bad_content_length;
            break;
        }
        case field_name::transfer_encoding:
            // Several Transfer-Encoding fields would have to be joined to
            // find the final coding; refuse instead.
            if (seen_te)
                return parse_status::bad_transfer_encoding;
            seen_te = true;
            out.transfer_encoding = value;
            break;
        default:
            break;
        }
    }

    if (seen_te) {
        if (seen_length)
            return parse_status::conflicting_framing;
        if (out.version_minor == 0)
            return parse_status::bad_transfer_encoding;
        // The final coding must be chunked.
        std::string_view last;
        for_each_list_element(out.transfer_encoding, [&](std::string_view e) { last = e; });
        if (!iequals(last, "chunked"))
            return parse_status::bad_transfer_encoding;
        // "chunked" applied twice is not a valid message either.
        int chunked_count = 0;
        for_each_list_element(out.transfer_encoding, [&](std::string_view e) {
            if (iequals(e, "chunked"))
                ++chunked_count;
        });
        if (chunked_count != 1)
            return parse_status::bad_transfer_encoding;
        out.body = framing::chunked;
    } else if (seen_length) {
        out.body = out.content_length > 0 ? framing::content_length : framing::none;
    }
    return parse_status::ok;
}

} // namespace

const char* to_string(parse_status s) {
    switch (s) {
    case parse_status::ok:
        return "ok";
    case parse_status::incomplete:
        return "incomplete";
    case parse_status::bad_start_line:
        return "malformed start line";
    case parse_status::bad_version:
        return "unsupported HTTP version";
    case parse_status::bad_field:
        return "malformed header field";
    case parse_status::space_before_colon:
        return "whitespace before header colon";
    case parse_status::obs_fold:
        return "obsolete line folding";
    case parse_status::bad_content_length:
        return "invalid Content-Length";
    case parse_status::bad_transfer_encoding:
        return "invalid Transfer-Encoding";
    case parse_status::conflicting_framing:
        return "both Content-Length and Transfer-Encoding";
    case parse_status::too_many_fields:
        return "too many header fields";
    }
    return "unknown";
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

namespace {

// A lowercase field name (letters and '-') as a template argument, so that
// comparing with it can be a couple of word compares.
template <std::size_t N> struct lowercase_name {
    char text[N - 1]{}; // without the terminating NUL
    consteval lowercase_name(const char (&s)[N]) {
        for (std::size_t i = 0; i + 1 < N; ++i)
            text[i] = s[i];
    }
    static constexpr std::size_t size = N - 1;
};

// Bytes of `Name` from `at`, and the bits to OR into a candidate's bytes
// before comparing with them: 0x20 where Name has a letter (folding case),
// none where it has '-' (which must then match exactly).
template <auto Name, typename Word> constexpr Word name_word(std::size_t at, bool fold) {
    Word w = 0;
    for (std::size_t k = 0; k < sizeof(Word); ++k) {
        const char c = Name.text[at + k];
        const auto byte = fold ? (c >= 'a' && c <= 'z' ? 0x20 : 0) : static_cast<unsigned char>(c);
        w |= static_cast<Word>(byte) << (8 * k); // little-endian, as the loads below
    }
    return w;
}

// name_word lays the bytes out for a little-endian load.
static_assert(std::endian::native == std::endian::little, "is_name compares little-endian words");

template <typename Word> Word load_word(const char* p) {
    Word w;
    std::memcpy(&w, p, sizeof w);
    return w;
}

// Whether the word of `p` at `At` matches Name's there.
template <auto Name, typename Word, std::size_t At> bool word_matches(const char* p) {
    constexpr Word want = name_word<Name, Word>(At, false);
    constexpr Word fold = name_word<Name, Word>(At, true);
    return (load_word<Word>(p + At) | fold) == want;
}

// Whether `name` (of Name's length) is Name, ignoring case: word-sized
// pieces covering every byte (the last one overlapping the one before when
// the length is not a multiple), each one OR and one compare.
template <lowercase_name Name> bool is_name(std::string_view name) {
    constexpr std::size_t n = Name.size;
    using word = std::conditional_t<(n >= 8), std::uint64_t,
                                    std::conditional_t<(n >= 4), std::uint32_t, std::uint16_t>>;
    constexpr std::size_t w = sizeof(word);
    static_assert(n >= w);
    const char* p = name.data();
    return [p]<std::size_t... I>(std::index_sequence<I...>) {
        return (word_matches<Name, word, std::min(I * w, n - w)>(p) & ...);
    }
    (std::make_index_sequence<(n + w - 1) / w>{});
}

} // namespace

field_name classify_field_name(std::string_view name) {
    // Length first: most names match none, and fail there.
    switch (name.size()) {
    case 2:
        return is_name<"te">(name) ? field_name::te : field_name::other;
    case 4:
        return is_name<"host">(name) ? field_name::host : field_name::other;
    case 6:
        return is_name<"expect">(name) ? field_name::expect : field_name::other;
    case 7:
        if (is_name<"upgrade">(name))
            return field_name::upgrade;
        return is_name<"trailer">(name) ? field_name::trailer : field_name::other;
    case 10:
        if (is_name<"connection">(name))
            return field_name::connection;
        return is_name<"keep-alive">(name) ? field_name::keep_alive : field_name::other;
    case 14:
        return is_name<"content-length">(name) ? field_name::content_length : field_name::other;
    case 15:
        return is_name<"x-forwarded-for">(name) ? field_name::x_forwarded_for : field_name::other;
    case 16:
        if (is_name<"proxy-connection">(name))
            return field_name::proxy_connection;
        return is_name<"x-forwarded-host">(name) ? field_name::x_forwarded_host : field_name::other;
    case 17:
        if (is_name<"transfer-encoding">(name))
            return field_name::transfer_encoding;
        return is_name<"x-forwarded-proto">(name) ? field_name::x_forwarded_proto
                                                  : field_name::other;
    default:
        return field_name::other;
    }
}

void message_head::clear() {
    auto keep = std::move(fields);
    keep.clear();
    // Room for a typical head at once, rather than growing 1, 2, 4, 8, 16.
    keep.reserve(typical_fields);
    *this = message_head{};
    fields = std::move(keep);
}

std::size_t find_head_end(std::string_view data, std::size_t from) {
    // Back up so a terminator split across two reads is found.
    std::size_t i = from >= 3 ? from - 3 : 0;
    while (i + 4 <= data.size()) {
        const void* hit = std::memchr(data.data() + i, '\r', data.size() - i);
        if (hit == nullptr)
            return 0;
        i = static_cast<std::size_t>(static_cast<const char*>(hit) - data.data());
        if (i + 4 > data.size())
            return 0;
        if (data[i + 1] == '\n' && data[i + 2] == '\r' && data[i + 3] == '\n')
            return i + 4;
        ++i;
    }
    return 0;
}

bool has_bare_lf(std::string_view data, std::size_t from) {
    for (auto i = data.find('\n', from); i != std::string_view::npos; i = data.find('\n', i + 1))
        if (i == 0 || data[i - 1] != '\r')
            return true;
    return false;
}

parse_status parse_request_head(std::string_view data, message_head& out, std::size_t head_end) {
    out.clear();
    const auto end = head_end != 0 ? head_end : find_head_end(data, 0);
    if (end == 0) {
        // A head ending in bare LFs would never look complete: refuse it now
        // rather than wait for the header timeout.
        if (!has_bare_lf(data, 0))
            return parse_status::incomplete;
        const auto first = data.find('\n');
        return data.find("\r\n") > first ? parse_status::bad_start_line : parse_status::bad_field;
    }
    const std::string_view head = data.substr(0, end);

    const auto line_end = head.find("\r\n");
    const std::string_view line = head.substr(0, line_end);
    // A bare CR or LF anywhere in the line is refused, not reinterpreted:
    // neither is a token or target character, and a version holding one is
    // malformed (not merely unsupported).

    // method SP request-target SP HTTP-version
    const auto sp1 = line.find(' ');
    if (sp1 == std::string_view::npos || sp1 == 0)
        return parse_status::bad_start_line;
    const auto sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || sp2 == sp1 + 1)
        return parse_status::bad_start_line;
    out.method = line.substr(0, sp1);
    out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    for (char c : out.method)
        if (!is_token_char(c))
            return parse_status::bad_start_line;
    for (char c : out.target)
        if (!is_target_char(c))
            return parse_status::bad_start_line;
    if (const auto st = parse_version(line.substr(sp2 + 1), out.version_minor);
        st != parse_status::ok)
        return has_cr_or_lf(line) ? parse_status::bad_start_line : st;

    // Every remaining line must end in CRLF, with no stray CR or LF inside.
    std::string_view lines = head.substr(line_end + 2, end - 2 - (line_end + 2));
    if (const auto st = parse_fields(lines, out); st != parse_status::ok)
        return st;
    out.head_size = end;
    return parse_status::ok;
}

parse_status parse_response_head(std::string_view data, message_head& out, std::size_t head_end) {
    out.clear();
    const auto end = head_end != 0 ? head_end : find_head_end(data, 0);
    if (end == 0)
        return parse_status::incomplete;
    const std::string_view head = data.substr(0, end);
    const auto line_end = head.find("\r\n");
    const std::string_view line = head.substr(0, line_end);
    // A bare CR or LF in the line: the version, digits and reason checks
    // below refuse it as malformed.

    // HTTP-version SP status-code SP [reason-phrase]
    if (line.size() < 8)
        return parse_status::bad_start_line;
    if (const auto st = parse_version(line.substr(0, line.find(' ')), out.version_minor);
        st != parse_status::ok)
        return has_cr_or_lf(line) ? parse_status::bad_start_line : st;
    if (line.size() < 12 || line[8] != ' ')
        return parse_status::bad_start_line;
    int status = 0;
    for (int i = 9; i < 12; ++i) {
        if (line[i] < '0' || line[i] > '9')
            return parse_status::bad_start_line;
        status = status * 10 + (line[i] - '0');
    }
    if (status < 100)
        return parse_status::bad_start_line;
    if (line.size() > 12 && line[12] != ' ')
        return parse_status::bad_start_line;
    out.status = status;
    out.reason = line.size() > 13 ? line.substr(13) : std::string_view{};
    // reason-phrase = *( HTAB / SP / VCHAR / obs-text ): no controls to pass on.
    for (char c : out.reason)
        if (!is_value_char(c))
            return parse_status::bad_start_line;

    std::string_view lines = head.substr(line_end + 2, end - 2 - (line_end + 2));
    if (const auto st = parse_fields(lines, out); st != parse_status::ok)
        return st;
    out.head_size = end;
    return parse_status::ok;
}

framing response_framing(const message_head& response, bool request_was_head) {
    if (request_was_head || response.status < 200 || response.status == 204 ||
        response.status == 304)
        return framing::none;
    if (response.body == framing::chunked)
        return framing::chunked;
    if (response.body == framing::content_length)
        return framing::content_length;
    // An explicit Content-Length of 0 was parsed as `none`.
    for (const auto& f : response.fields)
        if (f.name.size() == 14 && iequals(f.name, "content-length"))
            return framing::none;
    return framing::until_close;
}

chunked_scanner::result chunked_scanner::feed(std::string_view data,
                                              std::vector<std::string_view>* payload) {
    result r;
    std::size_t i = 0;
    const std::size_t n = data.size();
    auto fail = [&] {
        r.consumed = i;
        r.error = true;
        return r;
    };
    constexpr std::uint32_t max_trailer_bytes = 32 * 1024;
    while (i < n) {
        const char c = data[i];
        switch (state_) {
        case state::size_first:
        case state::size: {
            int digit = -1;
            if (c >= '0' && c <= '9')
                digit = c - '0';
            else if (c >= 'a' && c <= 'f')
                digit = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F')
                digit = c - 'A' + 10;
            if (digit >= 0) {
                if (++size_digits_ > 15)
                    return fail(); // would not fit 60 bits
                remaining_ = remaining_ * 16 + static_cast<std::uint64_t>(digit);
                state_ = state::size;
                ++i;
                break;
            }
            if (state_ == state::size_first)
                return fail();
            if (c == ';') {
                state_ = state::ext;
                ++i;
                break;
            }
            if (c == ' ' || c == '\t') {
                // BWS before ";" (RFC 9112 7.1.1); "5 5" must not pass as 5.
                state_ = state::size_ws;
                ++i;
                break;
            }
            if (c == '\r') {
                state_ = state::size_lf;
                ++i;
                break;
            }
            return fail();
        }
        case state::size_ws:
            if (c == ';')
                state_ = state::ext;
            else if (c == '\r')
                state_ = state::size_lf;
            else if (c != ' ' && c != '\t')
                return fail();
            ++i;
            break;
        case state::ext:
            // Chunk extensions are passed along unexamined but must not hide
            // line breaks or controls.
            if (c == '\r')
                state_ = state::size_lf;
            else if (!is_value_char(c))
                return fail();
            ++i;
            break;
        case state::size_lf:
            if (c != '\n')
                return fail();
            ++i;
            size_digits_ = 0;
            if (remaining_ == 0)
                state_ = state::trailer_start;
            else
                state_ = state::data;
            break;
        case state::data: {
            const auto take = static_cast<std::size_t>(
                std::min<std::uint64_t>(remaining_, static_cast<std::uint64_t>(n - i)));
            if (payload != nullptr)
                payload->push_back(data.substr(i, take));
            i += take;
            remaining_ -= take;
            if (remaining_ == 0)
                state_ = state::data_cr;
            break;
        }
        case state::data_cr:
            if (c != '\r')
                return fail();
            state_ = state::data_lf;
            ++i;
            break;
        case state::data_lf:
            if (c != '\n')
                return fail();
            state_ = state::size_first;
            ++i;
            break;
        case state::trailer_start:
            if (c == '\r') {
                state_ = state::final_lf;
            } else if (c == ' ' || c == '\t' || !is_token_char(c)) {
                return fail();
            } else {
                state_ = state::trailer;
            }
            ++i;
            break;
        case state::trailer:
            if (++trailer_bytes_ > max_trailer_bytes)
                return fail();
            if (c == '\r')
                state_ = state::trailer_lf;
            else if (!is_value_char(c))
                return fail();
            ++i;
            break;
        case state::trailer_lf:
            if (c != '\n')
                return fail();
            state_ = state::trailer_start;
            ++i;
            break;
        case state::final_lf:
            if (c != '\n')
                return fail();
            ++i;
            state_ = state::finished;
            r.consumed = i;
            r.done = true;
            return r;
        case state::finished:
            r.done = true;
            r.consumed = i;
            return r;
        }
    }
    r.consumed = i;
    return r;
}

} // namespace sluice::proxy::http
