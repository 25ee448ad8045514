"""A minimal WSGI app for the request_buffering tests (run by Gunicorn).

Like Django, it trusts CONTENT_LENGTH: it reads exactly that many bytes of
wsgi.input, and none when CONTENT_LENGTH is absent (a chunked request body
is then lost). It answers with what it saw as JSON: the method, path,
CONTENT_LENGTH, any Transfer-Encoding, how many body bytes it read and
their sha256, and the worker's pid.
"""

import hashlib
import json
import os


def app(environ, start_response):
    length = (environ.get("CONTENT_LENGTH") or "").strip()
    remaining = int(length) if length else 0
    stream = environ["wsgi.input"]
    digest = hashlib.sha256()
    read = 0
    while remaining > 0:
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        digest.update(chunk)
        read += len(chunk)
        remaining -= len(chunk)
    body = json.dumps({
        "method": environ.get("REQUEST_METHOD"),
        "path": environ.get("PATH_INFO"),
        "query": environ.get("QUERY_STRING"),
        "content_length": length or None,
        "transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING"),
        "bytes": read,
        "sha256": digest.hexdigest(),
        "pid": os.getpid(),
    }).encode("utf-8") + b"\n"
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
