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

# The Flex Consumption "one deploy" package (also zip deploy on Consumption/Premium): host.json at the
# root, the function folders, the linux/amd64 binary (mode 0755) at the path host.json names, and the
# job specs of handler/jobs as jobs/ - nothing else. zip keeps the execute bit (-X drops extra
# attributes, -D adds no directory entries). DIST moves the output (internal/deploy's test uses it).
DIST ?= dist
package: build
	rm -rf $(DIST)/app $(DIST)/dvbulk.zip && mkdir -p $(DIST)/app/bin $(DIST)/app/jobs
	cp host.json $(DIST)/app/ && cp -r EnrichTimer ChunkQueue $(DIST)/app/
	install -m 0755 $(BIN) $(DIST)/app/bin/dvbulk
	cp handler/jobs/*.json $(DIST)/app/jobs/
	cd $(DIST)/app && zip -q -r -X -D ../dvbulk.zip host.json EnrichTimer ChunkQueue bin jobs
	@echo "$(DIST)/dvbulk.zip"

clean:
	rm -rf bin dist
