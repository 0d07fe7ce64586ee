# Postbay: one image, one binary; the Pod's args pick the role (smtp, imap, operator).
# Build:  docker build -t postbay:dev .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p postbay \
 && install -D -m 0755 target/release/postbay /out/postbay

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/postbay postbay \
 && mkdir -p /var/lib/postbay && chown postbay /var/lib/postbay
COPY --from=build /out/postbay /usr/local/bin/postbay
USER 10001
ENV POSTBAY_DATA_DIR=/var/lib/postbay
# Unprivileged ports inside the Pod; Services map 25/465/587/143/993/110/995 onto them.
EXPOSE 2525 2424 1143 1993 1110 1995
ENTRYPOINT ["/usr/local/bin/postbay"]
