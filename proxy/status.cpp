#include "proxy/status.hpp"

#include "proxy/log.hpp"
#include "proxy/metrics.hpp"

#include <boost/json.hpp>

#include <ctime>

namespace sluice::proxy {
namespace json = boost::json;

namespace {

const char* balance_name(config::balance_policy b) {
    return b == config::balance_policy::least_conn ? "least_conn" : "round_robin";
}

void html_escape(std::string& out, std::string_view v) {
    for (char c : v) {
        switch (c) {
        case '<':
            out.append("&lt;");
            break;
        case '>':
            out.append("&gt;");
            break;
        case '&':
            out.append("&amp;");
            break;
        case '"':
            out.append("&quot;");
            break;
        default:
            out.push_back(c);
        }
    }
}

} // namespace

std::string format_utc(std::chrono::system_clock::time_point t) {
    const auto secs = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string render_status_json(const status_facts& f) {
    const auto& snap = *f.snap;
    json::object root;
    root["version"] = SLUICE_VERSION;
    root["generation"] = snap.generation;
    root["loaded_at"] = format_utc(f.history->loaded_at);
    json::object last;
    if (f.history->any) {
        last["ok"] = f.history->last_ok;
        last["at"] = format_utc(f.history->last_at);
        if (!f.history->last_ok)
            last["error"] = f.history->last_error;
    } else {
        last["ok"] = true;
        last["at"] = format_utc(f.history->loaded_at);
    }
    root["last_reload"] = std::move(last);
    root["active_connections"] = f.active_connections;
    json::array listeners;
    for (const auto& l : snap.cfg.listeners) {
        json::object o;
        o["name"] = l.name;
        o["bind"] = l.bind;
        o["tls"] = l.tls.has_value();
        listeners.push_back(std::move(o));
    }
    root["listeners"] = std::move(listeners);
    json::array upstreams;
    const auto now = steady_now_ns();
    for (const auto& u : snap.upstreams) {
        json::object o;
        o["name"] = u.cfg->name;
        o["balance"] = balance_name(u.cfg->balance);
        json::array servers;
        for (std::size_t i = 0; i < u.servers.size(); ++i) {
            const auto& s = *u.servers[i];
            json::object so;
            so["address"] = s.address;
            if (s.name != s.address)
                so["name"] = s.name;
            so["weight"] = u.weights[i];
            so["healthy"] = s.available(now);
            so["in_flight"] = s.in_flight.load(std::memory_order_relaxed);
            if (s.last_check.done) {
                json::object check;
                check["ok"] = s.last_check.ok;
                check["at"] = format_utc(s.last_check.at);
                check["status"] = s.last_check.status;
                if (!s.last_check.ok)
                    check["error"] = s.last_check.error;
                so["last_check"] = std::move(check);
            }
            servers.push_back(std::move(so));
        }
        o["servers"] = std::move(servers);
        upstreams.push_back(std::move(o));
    }
    root["upstreams"] = std::move(upstreams);
    return json::serialize(root);
}

std::string render_metrics(const status_facts& f) {
    exposition_input in;
    in.snap = f.snap;
    in.reload_successes = f.history->successes;
    in.reload_failures = f.history->failures;
    in.last_reload_ok = f.history->last_ok;
    in.workers = f.workers;
    return render_prometheus(in);
}

std::string render_status_page(const status_facts& f) {
    const auto& snap = *f.snap;
    const auto now = steady_now_ns();
    std::string out;
    out.append("<!doctype html><html><head><meta charset=\"utf-8\"><title>sluice status</title>"
               "<meta http-equiv=\"refresh\" content=\"5\">"
               "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;"
               "margin-bottom:1.5em}"
               "td,th{border:1px solid #ccc;padding:.3em .7em;text-align:left}"
               ".up{background:#c8f0c8}.down{background:#f6c4c4}</style></head><body>");
    out.append("<h1>sluice " SLUICE_VERSION "</h1><p>generation " +
               std::to_string(snap.generation) + ", loaded " + format_utc(f.history->loaded_at) +
               ", " + std::to_string(f.active_connections) + " client connections</p>");
    out.append("<h2>Listeners</h2><table><tr><th>name</th><th>bind</th><th>tls</th></tr>");
    for (const auto& l : snap.cfg.listeners) {
        out.append("<tr><td>");
        html_escape(out, l.name);
        out.append("</td><td>");
        html_escape(out, l.bind);
        out.append(l.tls ? "</td><td>yes</td></tr>" : "</td><td>no</td></tr>");
    }
    out.append("</table><h2>Upstreams</h2>");
    for (const auto& u : snap.upstreams) {
        out.append("<h3>");
        html_escape(out, u.cfg->name);
        out.append(std::string(" (") + balance_name(u.cfg->balance) + ")</h3>");
        out.append(
            "<table><tr><th>server</th><th>weight</th><th>state</th><th>in flight</th></tr>");
        for (std::size_t i = 0; i < u.servers.size(); ++i) {
            const auto& s = *u.servers[i];
            const bool up = s.available(now);
            out.append(up ? "<tr class=\"up\"><td>" : "<tr class=\"down\"><td>");
            html_escape(out, s.address);
            out.append("</td><td>" + std::to_string(u.weights[i]) + "</td><td>" +
                       (up ? "up" : "down") + "</td><td>" +
                       std::to_string(s.in_flight.load(std::memory_order_relaxed)) + "</td></tr>");
        }
        out.append("</table>");
    }
    out.append("</body></html>\n");
    return out;
}

} // namespace sluice::proxy
