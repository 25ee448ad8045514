// libFuzzer target: arbitrary bytes as a configuration file, through
// config::load_string (yaml-cpp, the schema, validate()). Its contract
// (config/load.hpp): it never throws, and returns either a config or every
// error found, each placed at a 1-based line and column with a message.

#include "fuzz_support.hpp"

#include "config/load.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
    const std::string_view yaml(reinterpret_cast<const char*>(bytes), size);
    const std::string file_name = "fuzz.yaml";
    try {
        const auto result = sluice::config::load_string(yaml, file_name);
        if (const auto* errors = std::get_if<std::vector<sluice::config::error>>(&result)) {
            SLUICE_FUZZ_CHECK(!errors->empty(), "config: failed with an empty error list");
            for (const auto& e : *errors) {
                SLUICE_FUZZ_CHECK(e.line >= 1 && e.column >= 1,
                                  "config: error position not 1-based");
                SLUICE_FUZZ_CHECK(!e.message.empty(), "config: error without a message");
                SLUICE_FUZZ_CHECK(e.file == file_name, "config: error names another file");
                SLUICE_FUZZ_CHECK(!sluice::config::to_string(e).empty(),
                                  "config: empty error text");
            }
        } else {
            const auto& cfg = std::get<sluice::config::config>(result);
            SLUICE_FUZZ_CHECK(cfg.path == file_name, "config: loaded config names another file");
            SLUICE_FUZZ_CHECK(cfg.workers >= 1, "config: workers not resolved to >= 1");
            // Positions recorded for error_at() are 1-based too.
            for (const auto& [key, where] : cfg.positions)
                SLUICE_FUZZ_CHECK(where.line >= 1 && where.column >= 1,
                                  "config: recorded position not 1-based");
        }
    } catch (...) {
        SLUICE_FUZZ_CHECK(false, "config: load_string threw");
    }
    return 0;
}
