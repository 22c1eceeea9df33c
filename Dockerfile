# For users who build with Docker. `make image` builds the same image
# without a Docker engine (hack/image).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /kvgitops ./cmd/kvgitops

FROM gcr.io/distroless/static:nonroot
LABEL org.opencontainers.image.title="kvgitops" \
      org.opencontainers.image.source="https://github.com/kvgitops/kvgitops"
COPY --from=build /kvgitops /kvgitops
USER 65532:65532
ENTRYPOINT ["/kvgitops"]
CMD ["run"]
