#include "proxy/request_id.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <cstring>
#include <random>

namespace sluice::proxy {

bool valid_request_id(std::string_view id) {
    if (id.empty() || id.size() > 200)
        return false;
    for (char c : id) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' || c == '@' ||
                        c == '+' || c == '=' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

namespace {
std::uint64_t splitmix64(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
std::uint64_t rotl(std::uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}
} // namespace

request_id_generator::request_id_generator(std::uint64_t seed) {
    for (auto& word : s_)
        word = splitmix64(seed);
}

request_id_generator::request_id_generator() {
    std::random_device rd;
    std::uint64_t seed = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    for (auto& word : s_)
        word = splitmix64(seed) ^ (static_cast<std::uint64_t>(rd()) << 16);
}

std::uint64_t request_id_generator::next64() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
}

// Hex digits 16 bytes at a time (SSE2, else a byte at a time), then the
// dashes: the ID is made on every request.
void request_id_generator::next(std::array<char, 36>& out) {
    std::uint64_t words[2] = {__builtin_bswap64(next64()), __builtin_bswap64(next64())};
    std::uint8_t b[16];
    std::memcpy(b, words, sizeof b);
    b[6] = static_cast<std::uint8_t>((b[6] & 0x0f) | 0x40); // version 4
    b[8] = static_cast<std::uint8_t>((b[8] & 0x3f) | 0x80); // variant 10xx
    char hex[32];
#if defined(__SSE2__)
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b));
    const __m128i low4 = _mm_set1_epi8(0x0f);
    const __m128i high = _mm_and_si128(_mm_srli_epi16(bytes, 4), low4);
    const __m128i low = _mm_and_si128(bytes, low4);
    // '0' + n, and 'a' - '0' - 10 more for n > 9.
    const auto digits = [](__m128i n) {
        const __m128i letters =
            _mm_and_si128(_mm_cmpgt_epi8(n, _mm_set1_epi8(9)), _mm_set1_epi8(39));
        return _mm_add_epi8(_mm_add_epi8(n, _mm_set1_epi8('0')), letters);
    };
    _mm_storeu_si128(reinterpret_cast<__m128i*>(hex), digits(_mm_unpacklo_epi8(high, low)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(hex + 16), digits(_mm_unpackhi_epi8(high, low)));
#else
    static constexpr char digit[] = "0123456789abcdef";
    for (int i = 0; i < 16; ++i) {
        hex[2 * i] = digit[b[i] >> 4];
        hex[2 * i + 1] = digit[b[i] & 0x0f];
    }
#endif
    char* o = out.data();
    std::memcpy(o, hex, 8);
    o[8] = '-';
    std::memcpy(o + 9, hex + 8, 4);
    o[13] = '-';
    std::memcpy(o + 14, hex + 12, 4);
    o[18] = '-';
    std::memcpy(o + 19, hex + 16, 4);
    o[23] = '-';
    std::memcpy(o + 24, hex + 20, 12);
}

} // namespace sluice::proxy
