# syntax=docker/dockerfile:1
#
# podcreds node agent image. Build with BuildKit (the default builder since
# Docker 23):
#   docker build -t registry.example.com/podcreds:v0.1.0 .
# then point deploy/kustomization.yaml's images: entry at it.

# Builder: a static, stripped binary. It runs on the build machine's platform
# and cross-compiles for the target, so multi-platform builds need no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
# Dependencies first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w" -o /out/podcreds ./cmd/podcreds

# Final stage: distroless static as root, not :nonroot and not scratch.
#
# - Root, because the DaemonSet runs the agent as uid 0 with every capability
#   dropped except NET_BIND_SERVICE and NET_ADMIN (see the comment in
#   deploy/daemonset.yaml): a non-root user would lose those capabilities at
#   execve(), since Kubernetes sets no ambient capabilities and file
#   capabilities do not combine reliably with allowPrivilegeEscalation: false.
#   So there is no setcap here, and no xattrs to preserve.
# - Not scratch: the agent calls STS and the API server over TLS and needs the
#   CA bundle (/etc/ssl/certs) that distroless static carries, plus tzdata and
#   an /etc/passwd; nothing else (no shell, no package manager).
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/podcreds /podcreds
USER 0:0
ENTRYPOINT ["/podcreds"]
CMD ["agent"]
