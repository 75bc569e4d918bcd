# hostcompute — see README.md. Every target installs what it needs.
# GODIR holds a go command as new as go.mod needs: the one in PATH or /usr/local/go/bin
# when new enough, else what scripts/install-go.sh installs (Debian's golang-go when
# there is no Go at all, then that Go version from the Go module proxy).
GODIR := $(shell scripts/install-go.sh)
ifeq ($(GODIR),)
$(error no Go toolchain: see the messages of scripts/install-go.sh above)
endif
export PATH := $(GODIR):/usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin

.PHONY: all build deps test vet fmt-check cross fuzz demo bench clean

all: build

deps:
	@scripts/install-deps.sh test
	@scripts/install-go-peers.sh

# Static (no cgo: nothing in it needs C): every container's monitor is this binary
# re-executed, and without libc and the dynamic loader it starts sooner and maps
# less (bench/README.md, the container rows).
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/hcs ./cmd/hcs

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# The format packages build (and vet) for other systems too: OS calls live in small
# per-OS files, with portable fallbacks or errors.ErrUnsupported elsewhere.
cross:
	GOOS=darwin $(GO) build ./pkg/...
	GOOS=windows $(GO) build ./pkg/...
	GOOS=darwin $(GO) vet ./pkg/...
	GOOS=windows $(GO) vet ./pkg/...

# The test suite: vet, formatting, the other systems' builds of the format packages,
# then every package's tests (fuzz seed corpora run as ordinary tests). Root-only tests
# run here; they skip with a reason elsewhere.
test: deps fmt-check vet cross
	$(GO) test -count=1 -timeout 20m ./...

# Runs every fuzz target for FUZZTIME each (default 30s).
FUZZTIME ?= 30s
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

# Imports, inspects and exports a generated Windows layer pair with the CLI.
demo: deps build
	@scripts/demo.sh

bench: deps
	@scripts/install-deps.sh bench
	@scripts/install-go-peers.sh bench
	$(GO) run ./bench $(BENCHFLAGS)

clean:
	rm -rf $(BIN) bench/_out
