// sluice: command line (SPEC 1), then the server.

#include "config/load.hpp"
#include "proxy/log.hpp"
#include "proxy/server.hpp"
#include "tls/context.hpp"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>

namespace {

constexpr std::string_view usage =
    "usage: sluice [--config FILE] [--check] [--log-level trace|debug|info|warn|error]\n"
    "              [--version] [--help]\n"
    "\n"
    "  --config FILE     configuration file (default: $SLUICE_CONFIG, else\n"
    "                    /etc/sluice/sluice.yaml)\n"
    "  --check           validate the configuration (and its certificates), print\n"
    "                    \"config ok\" and exit 0, or print every error and exit 1\n"
    "  --log-level L     least severe level logged (default info)\n"
    "  --version         print the version and exit\n"
    "  --help            print this help and exit\n"
    "\n"
    "Exit codes: 0 clean exit, 1 invalid config or start-up failure, 2 usage error.\n";

int usage_error(std::string_view message) {
    std::cerr << "sluice: " << message << "\n" << usage;
    return 2;
}

} // namespace

int main(int argc, char** argv) {
    std::string config_path;
    bool check = false;
    sluice::log::level level = sluice::log::level::info;

    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        auto value = [&](std::string_view name) -> const char* {
            if (i + 1 >= argc)
                return nullptr;
            (void)name;
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") {
            std::cout << usage;
            return 0;
        } else if (arg == "--version") {
            std::cout << "sluice " SLUICE_VERSION "\n";
            return 0;
        } else if (arg == "--check") {
            check = true;
        } else if (arg == "--config" || arg.starts_with("--config=")) {
            const char* v = arg == "--config" ? value(arg) : argv[i] + 9;
            if (v == nullptr || *v == '\0')
                return usage_error("--config needs a file");
            config_path = v;
        } else if (arg == "--log-level" || arg.starts_with("--log-level=")) {
            const char* v = arg == "--log-level" ? value(arg) : argv[i] + 12;
            if (v == nullptr || !sluice::log::parse_level(v, level))
                return usage_error("--log-level takes trace, debug, info, warn or error");
        } else {
            return usage_error("unknown argument \"" + std::string(arg) + "\"");
        }
    }
    if (config_path.empty()) {
        const char* env = std::getenv("SLUICE_CONFIG");
        config_path = env != nullptr && *env != '\0' ? env : "/etc/sluice/sluice.yaml";
    }

    auto loaded = sluice::config::load_file(config_path);
    if (auto* errors = std::get_if<std::vector<sluice::config::error>>(&loaded)) {
        for (const auto& e : *errors)
            std::cerr << sluice::config::to_string(e) << "\n";
        return 1;
    }
    auto& cfg = std::get<sluice::config::config>(loaded);
    // Certificates and keys must load and match, at start-up as in --check.
    bool certificates_ok = true;
    for (std::size_t l = 0; l < cfg.listeners.size(); ++l) {
        if (!cfg.listeners[l].tls)
            continue;
        for (const auto& problem : sluice::tls::check_certificates(*cfg.listeners[l].tls)) {
            const auto key = "listeners[" + std::to_string(l) + "].tls.certificates";
            std::cerr << sluice::config::to_string(sluice::config::error_at(cfg, key, problem))
                      << "\n";
            certificates_ok = false;
        }
    }
    for (std::size_t u = 0; u < cfg.upstreams.size(); ++u) {
        if (!cfg.upstreams[u].tls)
            continue;
        if (const auto problem = sluice::tls::check_upstream_tls(*cfg.upstreams[u].tls);
            !problem.empty()) {
            const auto key = "upstreams[" + std::to_string(u) + "].tls.ca_file";
            std::cerr << sluice::config::to_string(sluice::config::error_at(cfg, key, problem))
                      << "\n";
            certificates_ok = false;
        }
    }
    if (!certificates_ok)
        return 1;
    if (check) {
        std::cout << "config ok\n";
        return 0;
    }

    sluice::log::init(level);
    sluice::proxy::server server(std::move(cfg));
    return server.run();
}
