#include "proxy/errors.hpp"

namespace sluice::proxy {

int status_for(proxy_error e) {
    switch (e) {
    case proxy_error::none:
        return 200;
    case proxy_error::bad_request:
        return 400;
    case proxy_error::no_route:
        return 404;
    case proxy_error::header_timeout:
    case proxy_error::body_timeout:
        return 408;
    case proxy_error::body_too_large:
        return 413;
    case proxy_error::header_too_large:
        return 431;
    case proxy_error::connect_failed:
    case proxy_error::upstream_reset:
    case proxy_error::bad_response:
        return 502;
    case proxy_error::no_healthy_server:
        return 503;
    case proxy_error::connect_timeout:
        return 502;
    case proxy_error::response_timeout:
        return 504;
    case proxy_error::client_closed:
        return 499; // logged, never sent
    }
    return 500;
}

std::string_view describe(proxy_error e) {
    switch (e) {
    case proxy_error::none:
        return "ok";
    case proxy_error::bad_request:
        return "malformed request";
    case proxy_error::header_timeout:
        return "request header timeout";
    case proxy_error::header_too_large:
        return "request header too large";
    case proxy_error::body_timeout:
        return "request body timeout";
    case proxy_error::body_too_large:
        return "request body too large";
    case proxy_error::no_route:
        return "no route";
    case proxy_error::no_healthy_server:
        return "no healthy server";
    case proxy_error::connect_failed:
        return "upstream unreachable";
    case proxy_error::connect_timeout:
        return "upstream connect timeout";
    case proxy_error::upstream_reset:
        return "upstream closed the connection";
    case proxy_error::bad_response:
        return "malformed upstream response";
    case proxy_error::response_timeout:
        return "upstream response timeout";
    case proxy_error::client_closed:
        return "client closed the connection";
    }
    return "error";
}

std::string_view reason_phrase(int status) {
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "";
    }
}

} // namespace sluice::proxy
