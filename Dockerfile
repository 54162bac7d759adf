# Builds the static peapod binary. The agent itself needs the host's
# namespaces, cgroups and /run: run the binary on the host (systemd), or this
# image with --privileged --pid=host --network=host and /run, /var/lib/peapod,
# /var/log/pods, /sys/fs/cgroup and the manifest directory bind-mounted.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -tags grpcnotrace -ldflags='-s -w' -o /out/peapod ./cmd/peapod

FROM scratch
COPY --from=build /out/peapod /peapod
ENTRYPOINT ["/peapod"]
CMD ["agent"]
