# dvbulk: the two set-up commands are `make demo` (runs the nightly job end to end against the
# built-in simulators) and `make test` (everything CI runs).

GO          ?= go
BIN         := bin/dvbulk
AZURITE_DIR := internal/azurite
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: build test demo bench lint package clean azurite

# A static linux/amd64 binary at the path host.json names (customHandler.description.defaultExecutablePath).
build:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -o $(BIN) ./handler

# The pinned Azurite (npm package) the integration tests start on loopback ports.
azurite:
	@if [ ! -x $(AZURITE_DIR)/node_modules/.bin/azurite-blob ]; then \
		cd $(AZURITE_DIR) && npm ci --no-audit --no-fund --loglevel=error; fi

test: build azurite
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 40m ./...

demo: build
	./$(BIN) demo

bench: build
	./$(BIN) bench

lint:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# A zip-deploy archive: host.json, the function folders and the binary.
package: build
	rm -rf dist && mkdir -p dist/app/bin
	cp host.json dist/app/ && cp -r EnrichTimer ChunkQueue dist/app/ && cp $(BIN) dist/app/bin/
	cd dist/app && python3 -m zipfile -c ../dvbulk.zip host.json EnrichTimer ChunkQueue bin
	@echo "dist/dvbulk.zip"

clean:
	rm -rf bin dist
