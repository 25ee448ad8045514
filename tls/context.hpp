#pragma once
// TLS for listeners (SPEC 6): OpenSSL server contexts built from a
// listener's `tls` settings. Light header: no OpenSSL or Asio types.

#include "config/model.hpp"

#include <string>
#include <vector>

namespace sluice::tls {

// Checks that every certificate and key of `settings` loads and that each
// key matches its certificate. Returns one message per problem, naming the
// files ("cannot read key /etc/…: …", "key does not match certificate …").
std::vector<std::string> check_certificates(const config::tls_settings& settings);

// An upstream's `tls`: the CA bundle loads (when one is named). Returns the
// problem, or "".
std::string check_upstream_tls(const config::upstream_tls& settings);

} // namespace sluice::tls
