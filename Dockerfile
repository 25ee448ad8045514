# sluice as the ingress container: built on Debian 12, run on Debian 12 slim.
FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN bash deploy/install-deps.sh \
 && cmake --preset release -DSLUICE_TESTS=OFF \
 && cmake --build --preset release --target sluice

FROM debian:12-slim
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      libssl3 libyaml-cpp0.7 libspdlog1.10 libfmt9 libprometheus-cpp-core1.0 libc-ares2 \
      libboost-json1.81.0 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/release/proxy/sluice /usr/local/bin/sluice
COPY examples/quickstart.yaml /etc/sluice/sluice.yaml
EXPOSE 8080 8443
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["--config", "/etc/sluice/sluice.yaml"]
