#pragma once
// How Catch prints parse results and framings in failure messages (by
// name). One header, so every test file uses the same specializations.

#include "proxy/http_parser.hpp"

#include <catch2/catch.hpp>

#include <string>

namespace Catch {
template <> struct StringMaker<sluice::proxy::http::parse_status> {
    static std::string convert(sluice::proxy::http::parse_status s) {
        return sluice::proxy::http::to_string(s);
    }
};
template <> struct StringMaker<sluice::proxy::http::framing> {
    static std::string convert(sluice::proxy::http::framing f) {
        using sluice::proxy::http::framing;
        switch (f) {
        case framing::none:
            return "none";
        case framing::content_length:
            return "content_length";
        case framing::chunked:
            return "chunked";
        case framing::until_close:
            return "until_close";
        }
        return "framing(?)";
    }
};
} // namespace Catch
