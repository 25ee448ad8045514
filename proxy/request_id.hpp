#pragma once
// Request IDs (SPEC 3): a new ID is a random, lowercase, canonical UUIDv4;
// an incoming ID is kept only when it is well formed.

#include <array>
#include <cstdint>
#include <string_view>

namespace sluice::proxy {

// 1..200 characters of [A-Za-z0-9._:@+=-].
bool valid_request_id(std::string_view id);

// A fast per-thread generator (xoshiro256**), seeded from the OS. Not shared
// between threads: each worker owns one, so making an ID takes no lock.
class request_id_generator {
  public:
    request_id_generator();                            // seeded from std::random_device
    explicit request_id_generator(std::uint64_t seed); // for tests

    // Writes a new UUIDv4 ("xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx") into out.
    void next(std::array<char, 36>& out);

  private:
    std::uint64_t next64();
    std::array<std::uint64_t, 4> s_{};
};

} // namespace sluice::proxy
