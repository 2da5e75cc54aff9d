# grpcwall: `sudo make test` and `sudo make demo` work on a fresh Debian 12
# machine: both install what they need first (scripts/install-deps.sh).

BUILD   ?= build
CLANG   ?= clang
CXX     ?= g++
# bpftool lives in /usr/sbin, which a user's PATH may not have
BPFTOOL ?= $(or $(shell command -v bpftool 2>/dev/null),/usr/sbin/bpftool)
ARCH    := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')

CXXFLAGS ?= -O2 -g
CXXFLAGS += -std=c++17 -Wall -Wextra -Werror -I$(BUILD) -Ibpf -Ihpack -Iloader -Itests/unit
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 -Wall -Wextra -Werror -Ibpf -Ihpack
LDLIBS   := -lbpf -lelf -lz -lyaml-cpp
BPFCFLAGS := -g -O2 -Wall -Werror -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) \
             -I$(BUILD) -Ibpf -Ihpack

BPF_SRCS   := $(wildcard bpf/*.bpf.c)
BPF_OBJS   := $(patsubst bpf/%.bpf.c,$(BUILD)/%.bpf.o,$(BPF_SRCS))
BPF_HDRS   := $(wildcard bpf/*.h) $(wildcard hpack/*.h)
LOADER_SRCS := $(wildcard loader/*.cpp)
LOADER_HDRS := $(wildcard loader/*.h)
CORE_SRCS  := loader/policy.cpp loader/yaml_doc.cpp loader/fb_stream.cpp loader/descriptors.cpp
UNIT_SRCS  := $(wildcard tests/unit/*.cpp)

.PHONY: all deps test unit e2e demo clean bench bench-quick fuzz soak install uninstall deb

all: $(BUILD)/grpcwall $(BUILD)/py/cloudcity_pb2.py $(BPF_OBJS)

# the objects stay (tests load them with bpftool): not intermediates of the skeleton
.SECONDARY: $(BPF_OBJS)

# python stubs for the Cloud City test server and clients
$(BUILD)/py/cloudcity_pb2.py: tests/grpc/cloudcity.proto
	@mkdir -p $(BUILD)/py
	/usr/bin/python3 -m grpc_tools.protoc -Itests/grpc --python_out=$(BUILD)/py --grpc_python_out=$(BUILD)/py $<

deps:
	@scripts/install-deps.sh

$(BUILD)/vmlinux.h:
	@mkdir -p $(BUILD)
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(BUILD)/hpack_tables.h: scripts/gen-hpack-tables.py
	@mkdir -p $(BUILD)
	/usr/bin/python3 $< > $@.tmp && mv $@.tmp $@

$(BUILD)/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS) $(BUILD)/vmlinux.h $(BUILD)/hpack_tables.h
	$(CLANG) $(BPFCFLAGS) -c $< -o $@

$(BUILD)/%.skel.h: $(BUILD)/%.bpf.o
	$(BPFTOOL) gen skeleton $< name $(subst -,_,$*)_bpf > $@.tmp && mv $@.tmp $@

$(BUILD)/grpcwall: $(LOADER_SRCS) $(LOADER_HDRS) $(wildcard bpf/*.h) $(wildcard hpack/*.h) $(BUILD)/hpack_tables.h $(BUILD)/grpcwall.skel.h
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) $(LDFLAGS) $(LOADER_SRCS) -o $@ $(LDLIBS)

# the same grpcwall with another map layout (one more denial per server
# connection): what an attach over another version's pin dir meets (tests)
$(BUILD)/other/grpcwall: $(LOADER_SRCS) $(LOADER_HDRS) $(BPF_HDRS) bpf/grpcwall.bpf.c $(BUILD)/vmlinux.h $(BUILD)/hpack_tables.h
	@mkdir -p $(BUILD)/other
	$(CLANG) $(BPFCFLAGS) -DGW_DENIED_RING=9 -c bpf/grpcwall.bpf.c -o $(BUILD)/other/grpcwall.bpf.o
	$(BPFTOOL) gen skeleton $(BUILD)/other/grpcwall.bpf.o name grpcwall_bpf > $(BUILD)/other/grpcwall.skel.h
	$(CXX) $(CPPFLAGS) -I$(BUILD)/other $(CXXFLAGS) -DGW_DENIED_RING=9 $(LDFLAGS) $(LOADER_SRCS) -o $@ $(LDLIBS)

$(BUILD)/unit_tests: $(UNIT_SRCS) $(CORE_SRCS) $(LOADER_HDRS) $(wildcard bpf/*.h) $(wildcard hpack/*) $(BUILD)/hpack_tables.h
	$(CXX) $(CXXFLAGS) -DGW_SOURCE_DIR='"$(CURDIR)"' $(UNIT_SRCS) $(CORE_SRCS) -o $@ \
	  -lgtest -lgtest_main -lpthread -lyaml-cpp -lnghttp2

# libFuzzer over the shared walker + HPACK model, seeded with the captures
$(BUILD)/h2_fuzz: tests/fuzz/h2_fuzz.cpp tests/unit/replay.h loader/fb_stream.cpp loader/fb_stream.h $(wildcard hpack/*.h) $(wildcard bpf/*.h) $(BUILD)/hpack_tables.h
	clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -I$(BUILD) -Ibpf -Ihpack -Iloader $< loader/fb_stream.cpp -o $@

FUZZ_SECONDS ?= 60
fuzz: $(BUILD)/h2_fuzz
	@mkdir -p $(BUILD)/fuzz-corpus && for f in tests/fixtures/*.c2s.bin; do \
	  for w in 000 006 077; do printf "\\$$w" | cat - $$f > $(BUILD)/fuzz-corpus/$$w-$$(basename $$f); done; done
	$(BUILD)/h2_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=4096 $(BUILD)/fuzz-corpus

unit: $(BUILD)/unit_tests
	$(BUILD)/unit_tests

e2e: all $(BUILD)/proginfo $(BUILD)/other/grpcwall
	GRPCWALL=$(CURDIR)/$(BUILD)/grpcwall GW_PYGEN=$(CURDIR)/$(BUILD)/py bats tests/e2e

test: deps
	$(MAKE) all $(BUILD)/unit_tests $(BUILD)/bench_server $(BUILD)/connload $(BUILD)/proginfo $(BUILD)/other/grpcwall
	$(BUILD)/unit_tests
	$(MAKE) fuzz FUZZ_SECONDS=20
	$(MAKE) deb
	GW_STRICT=1 GRPCWALL=$(CURDIR)/$(BUILD)/grpcwall GW_PYGEN=$(CURDIR)/$(BUILD)/py bats tests/e2e

# the soak of tests/e2e/soak.bats for longer (make test runs it for 20 s)
SOAK_SECONDS ?= 180
soak: deps
	$(MAKE) all
	SOAK_SECONDS=$(SOAK_SECONDS) GW_STRICT=1 GRPCWALL=$(CURDIR)/$(BUILD)/grpcwall GW_PYGEN=$(CURDIR)/$(BUILD)/py \
	  bats tests/e2e/soak.bats

demo: deps
	$(MAKE) all
	scripts/demo.sh

# ---- benchmarks (issues 5, 10): sudo make bench / bench-quick ----
# lean server (nghttpd) baseline / floor / grpcwall, then the C++ gRPC server rows;
# bench.py builds the floor program (tests/bench/floor.bpf.c) into its temp dir
BENCH_GEN := $(BUILD)/bench
$(BENCH_GEN)/cloudcity.grpc.pb.cc: tests/grpc/cloudcity.proto
	@mkdir -p $(BENCH_GEN)
	protoc -Itests/grpc --cpp_out=$(BENCH_GEN) --grpc_out=$(BENCH_GEN) \
	  --plugin=protoc-gen-grpc=$$(command -v grpc_cpp_plugin) $<

$(BUILD)/bench_server: tests/bench/server.cpp $(BENCH_GEN)/cloudcity.grpc.pb.cc
	$(CXX) -std=c++17 -O2 -I$(BENCH_GEN) $< $(BENCH_GEN)/cloudcity.pb.cc $(BENCH_GEN)/cloudcity.grpc.pb.cc \
	  -o $@ $$(pkg-config --cflags --libs grpc++ protobuf) -lpthread

$(BUILD)/connload: tests/bench/connload.c
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) $< -o $@

# what the verifier processed per program (skeleton.bats keeps it in bounds)
$(BUILD)/proginfo: tests/tools/proginfo.c
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) $< -o $@ -lbpf

BENCH_ARGS = --grpcwall $(BUILD)/grpcwall --server $(BUILD)/bench_server --connload $(BUILD)/connload

bench: deps
	$(MAKE) all $(BUILD)/bench_server $(BUILD)/connload
	/usr/bin/python3 tests/bench/bench.py $(BENCH_ARGS)

bench-quick: deps
	$(MAKE) all $(BUILD)/bench_server $(BUILD)/connload
	/usr/bin/python3 tests/bench/bench.py --quick $(BENCH_ARGS)

clean:
	rm -rf $(BUILD)

# ---- install (issue 13): sudo make install [PREFIX=/usr/local] [DESTDIR=...] ----
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
STATEDIR   ?= /var/lib/grpcwall
# systemctl daemon-reload after (un)installing units where systemd reads them
RELOAD_SYSTEMD = [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ] && \
  case "$(UNITDIR)" in /usr/lib/systemd/system|/usr/local/lib/systemd/system|/lib/systemd/system|/etc/systemd/system) true;; *) false;; esac

# the configuration (policy.yaml, default/grpcwall) is installed only where
# there is none: an existing one is never overwritten
install: $(BUILD)/grpcwall
	install -D -m 0755 $(BUILD)/grpcwall $(DESTDIR)$(SBINDIR)/grpcwall
	install -D -m 0644 dist/grpcwall.8 $(DESTDIR)$(MANDIR)/man8/grpcwall.8
	install -d $(DESTDIR)$(UNITDIR)
	for u in grpcwall.service grpcwall-proxy.service; do \
	  sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@STATEDIR@|$(STATEDIR)|g' dist/$$u > $(DESTDIR)$(UNITDIR)/$$u.tmp && \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.tmp && mv $(DESTDIR)$(UNITDIR)/$$u.tmp $(DESTDIR)$(UNITDIR)/$$u; done
	install -d $(DESTDIR)$(SYSCONFDIR)/grpcwall $(DESTDIR)$(SYSCONFDIR)/default
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/grpcwall/policy.yaml ]; then \
	  echo "kept $(DESTDIR)$(SYSCONFDIR)/grpcwall/policy.yaml (not overwritten)"; \
	else install -m 0644 dist/policy.yaml $(DESTDIR)$(SYSCONFDIR)/grpcwall/policy.yaml; fi
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/default/grpcwall ]; then \
	  echo "kept $(DESTDIR)$(SYSCONFDIR)/default/grpcwall (not overwritten)"; \
	else sed -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@STATEDIR@|$(STATEDIR)|g' dist/grpcwall.default \
	  > $(DESTDIR)$(SYSCONFDIR)/default/grpcwall && \
	  chmod 0644 $(DESTDIR)$(SYSCONFDIR)/default/grpcwall; fi
	@if $(RELOAD_SYSTEMD); then systemctl daemon-reload; fi
	@echo "installed; enable at boot: systemctl enable --now grpcwall (policy: $(SYSCONFDIR)/grpcwall/policy.yaml)"

# refuses while the units' pin dir is attached: without the binary nothing
# could detach it; the configuration stays (remove it yourself)
uninstall:
	@pin=$$(sed -n 's/^GRPCWALL_PIN_DIR=//p' $(DESTDIR)$(SYSCONFDIR)/default/grpcwall 2>/dev/null | tail -1 | tr -d "\"'"); \
	pin=$${pin:-/sys/fs/bpf/grpcwall}; \
	if [ -z "$(DESTDIR)" ] && [ -e "$$pin/gw_config" ]; then \
	  echo "uninstall: grpcwall is attached at $$pin: run 'systemctl stop grpcwall' or 'grpcwall detach --pin-dir $$pin' first" >&2; \
	  exit 1; fi
	@if $(RELOAD_SYSTEMD); then systemctl disable grpcwall.service grpcwall-proxy.service 2>/dev/null || true; fi
	rm -f $(DESTDIR)$(SBINDIR)/grpcwall $(DESTDIR)$(MANDIR)/man8/grpcwall.8 \
	  $(DESTDIR)$(UNITDIR)/grpcwall.service $(DESTDIR)$(UNITDIR)/grpcwall-proxy.service
	@if $(RELOAD_SYSTEMD); then systemctl daemon-reload; fi
	@echo "kept $(DESTDIR)$(SYSCONFDIR)/grpcwall/, $(DESTDIR)$(SYSCONFDIR)/default/grpcwall and $(STATEDIR) (your configuration)"

# ---- Debian package: make deb -> $(BUILD)/deb/grpcwall_<version>_<arch>.deb ----
# dpkg-buildpackage on a copy of the tracked sources (its output lands
# beside the tree it builds); debian/rules calls make and make install
DEB_DIR := $(BUILD)/deb
deb: deps
	@git -C $(CURDIR) diff --quiet HEAD 2>/dev/null || \
	  echo "deb: the work tree differs from HEAD: the package is built from HEAD (git archive)" >&2
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/grpcwall
	git -C $(CURDIR) archive --format=tar HEAD | tar -x -C $(DEB_DIR)/grpcwall
	cd $(DEB_DIR)/grpcwall && dpkg-buildpackage -b -us -uc
	@ls $(DEB_DIR)/*.deb
