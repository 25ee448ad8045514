// sluice-bench: command dispatch. Each subcommand owns its own argument
// parsing; this file only picks one and maps "no subcommand" to usage.
#include "bench/idle.hpp"
#include "bench/load.hpp"
#include "bench/origin.hpp"
#include "bench/probe.hpp"

#include <cstdio>
#include <span>
#include <string_view>

namespace {

constexpr std::string_view usage_text =
    "usage: sluice-bench load URL [--connections N] [--threads T] [--duration D] [--rate R]\n"
    "                             [--new-connection] [--method M] [--body-size S]\n"
    "                             [--header 'K: V']... [--insecure] [--json FILE]\n"
    "                             [--report FILE.html]\n"
    "       sluice-bench origin --listen HOST:PORT [--name NAME] [--threads N]\n"
    "       sluice-bench idle URL [--connections N] [--hold D] [--concurrency C] [--timeout D]\n"
    "       sluice-bench probe URL [--timeout D]\n"
    "       sluice-bench --version | --help\n"
    "Run 'sluice-bench COMMAND --help' for details.\n";

} // namespace

int main(int argc, char** argv) {
    const std::span<char* const> args{argv, static_cast<std::size_t>(argc)};
    if (args.size() < 2) {
        std::fputs(usage_text.data(), stderr);
        return 2;
    }
    const std::string_view command = args[1];
    if (command == "origin") {
        return sluice::bench::run_origin(args.subspan(2));
    }
    if (command == "load") {
        return sluice::bench::run_load(args.subspan(2));
    }
    if (command == "idle") {
        return sluice::bench::run_idle(args.subspan(2));
    }
    if (command == "probe") {
        return sluice::bench::run_probe(args.subspan(2));
    }
    if (command == "--help" || command == "-h" || command == "help") {
        std::fputs(usage_text.data(), stdout);
        return 0;
    }
    if (command == "--version") {
        std::printf("sluice-bench %s\n", SLUICE_VERSION);
        return 0;
    }
    std::fprintf(stderr, "sluice-bench: unknown command '%s'\n", args[1]);
    std::fputs(usage_text.data(), stderr);
    return 2;
}
