# Postbay: one image, one binary; the Pod's args pick the role (smtp, imap, operator).
#   docker build -t postbay:dev .        or: scripts/build-image (buildah/podman, no daemon)
# Runtime: distroless cc (glibc, libgcc, CA certificates; no shell, no package manager), as
# the distroless nonroot user 65532, which the Helm chart's runAsUser matches. Every write
# goes to the data volume (/var/lib/postbay) or /tmp, so a read-only root filesystem works.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p postbay \
 && install -D -m 0755 target/release/postbay /out/usr/local/bin/postbay \
 && install -d -m 0750 /out/var/lib/postbay

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local/bin/postbay /usr/local/bin/postbay
COPY --from=build --chown=65532:65532 /out/var/lib/postbay /var/lib/postbay
USER 65532:65532
ENV POSTBAY_DATA_DIR=/var/lib/postbay
# Unprivileged ports inside the Pod; Services map 25/587/465/24/143/993/110/995 onto them.
# 8080: the operator's /metrics, /healthz, /readyz.
EXPOSE 2525 2587 2465 2424 1143 1993 1110 1995 8080
ENTRYPOINT ["/usr/local/bin/postbay"]
