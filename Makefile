# Accord: `make demo` runs the whole job on a built-in demo, `make test` runs the tests.
# Both install the Debian packages they need first (as root, with apt-get).

SWIFT ?= swift
DEB_PACKAGES := zlib1g-dev libssl-dev libdeflate-dev libisal-dev postgresql openssh-server openssh-client sudo rsync python3 python3-yaml systemd man-db binutils

.PHONY: deps build release test demo bench clean

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

test: deps
	$(SWIFT) build --build-tests
	# Serial: the PostgreSQL/sshd fixtures of different test classes share system users and sudoers.
	$(SWIFT) test --skip-build

demo: release
	bash scripts/demo.sh .build/release/accord

bench: release
	bash Benchmarks/compare.sh

clean:
	rm -rf .build
