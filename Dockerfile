# syntax=docker/dockerfile:1
#
# podcreds node agent image, for Docker users. Build with BuildKit (the
# default builder since Docker 23):
#   docker build -t registry.example.com/podcreds:v0.1.0 \
#     --build-arg VERSION=$(git describe --tags --always --dirty) --build-arg COMMIT=$(git rev-parse HEAD) .
# then point deploy/kustomization.yaml's images: entry (or the Helm chart's
# image values) at it.
#
# `make image` builds the same image without Docker or any base image
# (hack/image/image.sh, with Debian's buildah): the binary `make build`
# makes (the flags below), FROM scratch with what the distroless base
# provides the agent here: the CA bundle, /etc/passwd and /etc/group, uid 0,
# the same entrypoint and command. It leaves out distroless' tzdata and
# /etc/nsswitch.conf, which the agent does not use (it logs in UTC and
# resolves names with Go's own resolver). `make image-test` runs it.

# Builder: a static, stripped binary. It runs on the build machine's platform
# and cross-compiles for the target, so multi-platform builds need no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
# What `podcreds version` prints; `make build` stamps the same.
ARG VERSION=
ARG COMMIT=
WORKDIR /src
# Dependencies first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/podcreds ./cmd/podcreds

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
