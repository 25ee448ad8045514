# syntax=docker/dockerfile:1
# sluice, the ingress container.
#
#   docker build -t sluice .
#   docker run -p 80:8080 -p 443:8443 -v "$PWD/conf:/etc/sluice:ro" sluice
#
# Build stage: the README's own steps (deploy/install-deps.sh, then the
# `release` CMake preset), then the unit tests; a failing test fails the
# build. tests/integration/test_deploy.py checks these commands against the
# README and the Makefile. Runtime stage: Debian 12 slim with the two
# binaries (stripped) and the shared libraries they link, nothing else.
# Sizes and times: deploy/README.md.

FROM debian:bookworm AS build
WORKDIR /src
# The install script first and alone, so its (large) layer is rebuilt only
# when the script changes, not on every source edit.
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN bash deploy/install-deps.sh \
 && rm -rf /var/lib/apt/lists/*
COPY . .
# ccache (installed by the script, used by CMakeLists.txt) keeps its cache in
# a BuildKit cache mount, so a rebuild recompiles only what changed.
ENV CCACHE_DIR=/ccache
RUN --mount=type=cache,target=/ccache \
    cmake --preset release \
 && cmake --build --preset release \
 && ctest --preset release -L unit
# Debug info stays in the build stage (the release preset is RelWithDebInfo).
RUN install -d /out \
 && strip --strip-unneeded -o /out/sluice build/release/proxy/sluice \
 && strip --strip-unneeded -o /out/sluice-bench build/release/bench/sluice-bench

FROM debian:bookworm-slim
# The shared libraries of both binaries (`ldd` + `dpkg -S`; libc6, libgcc-s1
# and libstdc++6 are already in the base). test_deploy.py checks this list.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libboost-json1.81.0 \
      libc-ares2 \
      libfmt9 \
      libprometheus-cpp-core1.0 \
      libspdlog1.10 \
      libssl3 \
      libyaml-cpp0.7 \
 && rm -rf /var/lib/apt/lists/*
# An unprivileged user with a fixed numeric id (Kubernetes' runAsNonRoot can
# only verify a numeric USER). Config in /etc/sluice, certificates mounted
# under /etc/sluice/tls; key files must be readable by uid or gid 10001.
RUN groupadd --system --gid 10001 sluice \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin sluice \
 && install -d -m 0755 /etc/sluice /etc/sluice/tls
COPY --from=build /out/sluice /out/sluice-bench /usr/local/bin/
# A placeholder that starts: /ping answers on :8080, admin on 127.0.0.1:9901.
# Mount your own sluice.yaml (or its directory) over it.
COPY examples/quickstart.yaml /etc/sluice/sluice.yaml
USER 10001:10001
# Unprivileged ports: publish them as 80/443 (`-p 80:8080 -p 443:8443`, a
# Kubernetes Service's targetPort). No file capability on the binary: it
# would not survive COPY --from on every builder, and a binary carrying one
# cannot even be executed in a container that drops every capability
# (Kubernetes' restricted profile does). deploy/README.md has the details.
EXPOSE 8080 8443
# SIGTERM drains: /ready turns 503, in-flight requests finish for up to
# timeouts.shutdown_grace. Give `docker stop -t` / stop_grace_period more.
STOPSIGNAL SIGTERM
# No curl in the image: sluice-bench's probe exits 0 on a 2xx answer, 1 otherwise.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/sluice-bench", "probe", "http://127.0.0.1:9901/healthz", "--timeout", "2s"]
# sluice is PID 1 (exec) and handles SIGTERM/SIGHUP/SIGUSR1 itself; it starts
# no child processes, so no init is needed. The shell only raises the soft
# open-files limit to the hard one first: engines now often start containers
# at a soft limit of 1024, a few hundred proxied connections.
ENTRYPOINT ["/bin/sh", "-c", "ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec /usr/local/bin/sluice \"$@\"", "sluice"]
CMD ["--config", "/etc/sluice/sluice.yaml"]
