# The p2c worker image: a release build with the Swift standard library linked statically, on a
# slim Debian with librdkafka, running as a non-root user.
#   docker build -t p2c:0.1.0 .
ARG SWIFT_IMAGE=swift:6.2-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${SWIFT_IMAGE} AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends librdkafka-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources Sources
COPY Tests Tests
RUN swift build -c release --product p2c --static-swift-stdlib \
    && install -D "$(swift build -c release --show-bin-path)/p2c" /out/p2c

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends librdkafka1 libstdc++6 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 p2c \
    && useradd --system --uid 10001 --gid p2c --no-create-home --shell /usr/sbin/nologin p2c
COPY --from=build /out/p2c /usr/local/bin/p2c
COPY Topics /etc/p2c/topics
ENV P2C_TOPICS=/etc/p2c/topics
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["p2c"]
CMD ["worker", "--help"]
