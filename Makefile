# auditq -- plain Makefile. `make` builds into build/; see README.md.
#   make                 build library, worker, tools
#   make test            deps + build + unit and integration tests
#   make demo            deps + build + private servers + 100k events end to end
#   make SANITIZE=address,undefined test   (or SANITIZE=thread)
#   make asan | tsan | valgrind      the suites under each tool
#   make test-faults                 the fault suite in its long form
#   make bindings                    the Python module into build/python, the Node.js addon into
#                                    bindings/node/build (README "Python", "Node.js")
#   make fuzz                        libFuzzer targets (clang), FUZZ_SECONDS each
#   make install PREFIX=/usr/local   (DESTDIR=dir to stage); make uninstall the same way

PREFIX   ?= /usr/local
CC       ?= cc
BUILD    ?= build
OPT      ?= -O2
WARNINGS  = -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wshadow \
            -Wformat=2 -Wno-format-nonliteral -Wpointer-arith -Wcast-qual -Wvla
ifneq ($(WERROR),)
WARNINGS += -Werror
endif
# hiredis: the one pkg-config finds (PKG_CONFIG_PATH picks a newer one).
# HIREDIS_SSL=1 when it comes with hiredis_ssl (hiredis >= 1.0 built with
# TLS): then rediss:// URLs work (AQ_HAVE_HIREDIS_SSL, common/redisconn.c).
# Debian 12's hiredis 0.14 has no TLS: see docs/SECURITY.md for a tunnel.
HIREDIS_SSL ?= $(shell pkg-config --exists hiredis_ssl 2>/dev/null && echo 1 || echo 0)
PKG_CFLAGS := $(shell pkg-config --cflags hiredis 2>/dev/null || echo -I/usr/include/hiredis) \
              -I$(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)
HIREDIS_LIBS := $(shell pkg-config --libs-only-L hiredis 2>/dev/null) -lhiredis
ifeq ($(HIREDIS_SSL),1)
PKG_CFLAGS   += -DAQ_HAVE_HIREDIS_SSL
HIREDIS_LIBS += -lhiredis_ssl -lssl -lcrypto
endif
CFLAGS   ?= $(OPT) -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC $(WARNINGS) $(CFLAGS) -Iinclude -Icommon -Iworker -Itools -I$(BUILD)/gen $(PKG_CFLAGS)
LDFLAGS  ?=
ifneq ($(SANITIZE),)
ALL_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
LDFLAGS    += -fsanitize=$(SANITIZE)
endif
LIBS_LIB  = $(HIREDIS_LIBS) -lmsgpackc -lcrypto -lpthread
LIBS_ALL  = $(HIREDIS_LIBS) -lmsgpackc -lpq -lev -lpthread -lm -lz -lcrypto -lsodium

# What goes into libauditq (producer + the common pieces it needs).
LIB_COMMON = common/codec.c common/text.c common/fileio.c common/uuid7.c common/redisconn.c common/backoff.c common/keys.c common/shards.c \
             $(sort $(wildcard common/spool*.c))
LIB_SRC    = $(LIB_COMMON) $(wildcard producer/*.c)
# Worker/tool-only common pieces.
APP_COMMON = common/config.c common/config_file.c common/config_mask.c common/log.c common/osuser.c common/pgconn.c \
             common/retention.c common/retention_run.c common/retention_export.c \
             common/merkle.c common/entry.c common/checkpoint.c
WORKER_SRC = $(wildcard worker/*.c)
CTL_SRC    = tools/auditqctl.c $(sort $(wildcard tools/ctl_*.c)) $(BUILD)/gen/migrations.c
BENCH_SRC  = tools/auditq-bench.c $(sort $(wildcard tools/bench_*.c)) tools/gen.c worker/pgw.c worker/pgw_encode.c worker/queue.c \
             worker/pgw_fault.c worker/pgw_isolate.c $(BUILD)/gen/migrations.c
# auditqctl's modules outside the ctl_* pattern (issue 13: SIEM formats, self-audit).
CTL_SRC   += tools/fmt_ocsf.c tools/fmt_cef.c tools/selfaudit.c

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(patsubst $(BUILD)/%,%,$(1)))

LIB_OBJ    = $(call obj,$(LIB_SRC))
APP_OBJ    = $(call obj,$(APP_COMMON))
WORKER_OBJ = $(call obj,$(WORKER_SRC))
CTL_OBJ    = $(call obj,$(CTL_SRC))
BENCH_OBJ  = $(call obj,$(BENCH_SRC))

LIB_A  = $(BUILD)/lib/libauditq.a
# The shared library as it is installed: the real file carries the full
# version, libauditq.so.0 (its SONAME, what programs load at run time) and
# libauditq.so (what -lauditq finds at link time) are symlinks, so
# `cc app.c -Lbuild/lib -lauditq` links and runs from the build tree too.
VERSION   := $(shell awk '/define AUDITQ_VERSION/ { gsub(/"/, "", $$3); print $$3 }' include/auditq.h)
LIB_SONAME = libauditq.so.0
LIB_SO     = $(BUILD)/lib/libauditq.so.$(VERSION)
LIB_LINKS  = $(BUILD)/lib/$(LIB_SONAME) $(BUILD)/lib/libauditq.so
BINS   = $(BUILD)/bin/auditq-worker $(BUILD)/bin/auditqctl $(BUILD)/bin/auditq-bench

UNIT_TESTS = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
IT_BINS    = $(patsubst tests/integration/%.c,$(BUILD)/tests/%,$(wildcard tests/integration/*.c))
# The worker with its test hooks (crash_after_commit) compiled in, for the
# crash tests (it_30, it_88, it_91: lib_it.sh's worker_start picks it when a
# hook is set). config.c and every worker/*.c are compiled again with
# -DAQ_TEST_HOOKS: the hook adds a field at the end of aq_config, and
# struct worker (worker/worker.h) holds aq_configs by value, so every
# worker object must see the same layout. bin/auditq-worker, the one
# installed, never has a hook.
HOOKS_WORKER = $(BUILD)/tests/auditq-worker-hooks
HOOKS_OBJ  = $(BUILD)/obj/hooks/common/config.o $(patsubst $(BUILD)/obj/%,$(BUILD)/obj/hooks/%,$(WORKER_OBJ))
IT_BINS   += $(HOOKS_WORKER)
# Fuzz targets tests/fuzz/fuzz_X.c (LLVMFuzzerTestOneInput). `make test`
# builds each with tests/fuzz/replay_main.c and the normal compiler and runs
# it over its seed corpus tests/fuzz/corpus/X/ (a regression test, no
# clang needed); `make fuzz` builds them with clang's libFuzzer.
FUZZ_SRC   = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY= $(patsubst tests/fuzz/%.c,$(BUILD)/tests/%,$(FUZZ_SRC))

.PHONY: all deps test unit integration demo demo-stop install uninstall clean bench bench-scaling asan tsan \
        valgrind fuzz fuzz-build test-faults bindings check-layout
all: $(LIB_A) $(LIB_SO) $(LIB_LINKS) $(BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/gen/migrations.c: $(sort $(wildcard sql/*.sql)) scripts/embed-sql.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-sql.sh $(sort $(wildcard sql/*.sql)) > $@.tmp && mv $@.tmp $@

$(LIB_A): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The library exports only its API (include/auditq.h, AUDITQ_API): its
# objects are compiled with hidden visibility and the .so is linked with a
# version script (producer/libauditq.map, node AUDITQ_0). Hidden visibility
# binds within one link only, so the programs and tests that link these
# objects or libauditq.a still call codec_*, spool_*, redis_* directly.
$(LIB_OBJ): ALL_CFLAGS += -fvisibility=hidden
LIB_MAP = producer/libauditq.map

$(LIB_SO): $(LIB_OBJ) $(LIB_MAP)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,$(LIB_SONAME) -Wl,--version-script=$(LIB_MAP) -o $@ $(LIB_OBJ) $(LDFLAGS) $(LIBS_LIB)

$(BUILD)/lib/$(LIB_SONAME): $(LIB_SO)
	ln -sfn $(notdir $<) $@
$(BUILD)/lib/libauditq.so: $(BUILD)/lib/$(LIB_SONAME)
	ln -sfn $(notdir $<) $@

$(BUILD)/bin/auditq-worker: $(WORKER_OBJ) $(APP_OBJ) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDFLAGS) $(LIBS_ALL)

$(BUILD)/bin/auditqctl: $(CTL_OBJ) $(APP_OBJ) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDFLAGS) $(LIBS_ALL)

$(BUILD)/bin/auditq-bench: $(BENCH_OBJ) $(APP_OBJ) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDFLAGS) $(LIBS_ALL)

# auditqctl's command modules (tools/ctl_*.c) as a library, for the unit
# tests of the tools (test_query, test_dlq): the linker takes only the
# members a test calls. Not installed.
CTL_A = $(BUILD)/lib/libauditqctl.a
$(CTL_A): $(filter-out $(BUILD)/obj/tools/auditqctl.o,$(CTL_OBJ))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# Unit tests: each tests/unit/test_X.c links the modules it tests (all of
# common/ and worker/ minus worker/main.c, the launcher, and $(CTL_A)) and
# cmocka. The headers it includes are tracked like an object's (-MMD into
# build/obj).
UNIT_LINK = $(LIB_OBJ) $(APP_OBJ) $(filter-out $(BUILD)/obj/worker/main.o,$(WORKER_OBJ))
$(BUILD)/tests/%: tests/unit/%.c $(UNIT_LINK) $(CTL_A)
	@mkdir -p $(dir $@) $(BUILD)/obj/tests/unit
	$(CC) $(ALL_CFLAGS) -MMD -MP -MF $(BUILD)/obj/tests/unit/$*.d -MT $@ -o $@ $(filter %.c %.o %.a,$^) $(LDFLAGS) $(LIBS_ALL) -lcmocka

$(BUILD)/tests/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.c $(UNIT_LINK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(LIBS_ALL)

$(BUILD)/tests/%: tests/integration/%.c $(LIB_A) $(APP_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(LIBS_ALL)

# sealtool also links the proof-file writer auditqctl uses (integrity tests).
$(BUILD)/tests/sealtool: tests/integration/sealtool.c $(BUILD)/obj/tools/ctl_verify_proof.o $(APP_OBJ) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(LIBS_ALL)

$(BUILD)/obj/hooks/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DAQ_TEST_HOOKS -MMD -MP -c $< -o $@

$(HOOKS_WORKER): $(HOOKS_OBJ) $(filter-out $(BUILD)/obj/common/config.o,$(APP_OBJ)) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDFLAGS) $(LIBS_ALL)

# The Node.js binding: bindings/node/build/auditq.node, this build's
# libauditq.a linked in, compiled by bindings/node/build.js with $(CC)
# directly (no node-gyp, no header download). Tested by it_62_node.sh.
NODE ?= node
.PHONY: bindings-node
bindings: bindings-node
bindings-node: $(LIB_A)
	BUILD=$(BUILD) CC=$(CC) WERROR=$(WERROR) $(NODE) bindings/node/build.js

deps:
	@sh scripts/deps.sh

# The Python binding (bindings/python, a CPython extension over libauditq.a)
# built with Debian's /usr/bin/python3 into $(BUILD)/python, where
# tests/integration/it_17_python.sh runs it under pytest. Not under SANITIZE:
# an ASan/TSan runtime cannot be loaded into a stock python3 (it must be the
# first library of the process), so `make asan`/`make tsan` skip the binding
# and it_17 says so. Installing: README "Python".
PYTHON   ?= /usr/bin/python3
BINDINGS  = $(if $(SANITIZE),,bindings)
bindings: $(LIB_A)
	cd bindings/python && AUDITQ_BUILD=$(abspath $(BUILD)) $(if $(WERROR),AUDITQ_WERROR=1) \
	    $(PYTHON) setup.py -q build --build-base $(abspath $(BUILD))/python-build \
	    --build-lib $(abspath $(BUILD))/python

unit: $(UNIT_TESTS)
	@fail=0; for t in $(UNIT_TESTS); do echo "== $$t"; $$t || fail=1; done; exit $$fail

integration: all $(IT_BINS)
	@bash tests/integration/run.sh

# The layout rules a script can check (no .c #included, no C file over
# 1,000 lines; scripts/check-layout.sh, docs/HACKING.md).
check-layout:
	@bash scripts/check-layout.sh

test: deps check-layout
	@$(MAKE) --no-print-directory all $(UNIT_TESTS) $(IT_BINS) $(FUZZ_REPLAY) $(BINDINGS)
	@bash tests/run-all.sh

# The fault-injection suite in its long form (tests/integration/it_9*:
# more kills, longer runs); `make test` runs the same scripts bounded.
test-faults: deps
	@$(MAKE) --no-print-directory all $(IT_BINS)
	@AQ_FAULTS=long AQ_IT_TIMEOUT=1800 bash tests/integration/run.sh it_9

# libFuzzer (clang): each target for FUZZ_SECONDS (default 60) from its
# seed corpus; new inputs go to build-fuzz/corpus/X, crashes to build-fuzz/.
fuzz: deps
	@bash tests/fuzz/run.sh

# Unit tests, fuzz corpora and the integration suite with every auditq
# binary run under valgrind memcheck (scripts/valgrind.sh).
valgrind: deps
	@$(MAKE) --no-print-directory BUILD=build-valgrind OPT=-O1 all $(patsubst $(BUILD)/%,build-valgrind/%,$(UNIT_TESTS) $(IT_BINS) $(FUZZ_REPLAY))
	@BUILD=build-valgrind bash scripts/valgrind.sh

# The whole suite under sanitizers, each in its own build dir.
asan:
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    $(MAKE) --no-print-directory BUILD=build-asan SANITIZE=address,undefined OPT=-O1 test
tsan:
	@TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" AQ_TIME_SCALE=$${AQ_TIME_SCALE:-3} \
	    $(MAKE) --no-print-directory BUILD=build-tsan SANITIZE=thread OPT=-O1 test

demo: deps
	@$(MAKE) --no-print-directory all
	@bash scripts/demo.sh

demo-stop:
	@bash scripts/demo.sh stop

# The standard scenario on private durable servers (scripts/bench.sh);
# bench-scaling: the threads/processes curve (scripts/bench-scaling.sh).
bench: all
	@BUILD=$(BUILD) bash scripts/bench.sh
bench-scaling: all
	@BUILD=$(BUILD) bash scripts/bench-scaling.sh

# What `make install` puts under $(DESTDIR)$(PREFIX)/: one list, so that
# `make uninstall` removes exactly these files (tests/integration/it_13_install.sh).
MAN_PAGES = $(wildcard docs/man/*.[138])
INSTALLED = $(addprefix bin/,$(notdir $(BINS))) \
            lib/libauditq.a lib/$(notdir $(LIB_SO)) lib/$(LIB_SONAME) lib/libauditq.so \
            lib/pkgconfig/auditq.pc include/auditq.h \
            share/auditq/auditq.conf.example share/auditq/auditq-alerts.yml \
            lib/systemd/system/auditq-worker.service \
            $(foreach m,$(MAN_PAGES),share/man/man$(subst .,,$(suffix $(m)))/$(notdir $(m)))

# ldconfig refreshes the run-time linker's cache after a system install;
# with DESTDIR (staging a package) the files are not in place yet.
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
	    $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/share/auditq
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/
	ln -sfn $(notdir $(LIB_SO)) $(DESTDIR)$(PREFIX)/lib/$(LIB_SONAME)
	ln -sfn $(LIB_SONAME) $(DESTDIR)$(PREFIX)/lib/libauditq.so
	install -m 644 include/auditq.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 config/auditq.conf $(DESTDIR)$(PREFIX)/share/auditq/auditq.conf.example
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' auditq.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/auditq.pc
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man3 \
	    $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/lib/systemd/system
	for m in $(MAN_PAGES); do \
	    install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man$${m##*.}/; done
	sed -e 's|/usr/local/|$(PREFIX)/|g' config/auditq-worker.service \
	    > $(DESTDIR)$(PREFIX)/lib/systemd/system/auditq-worker.service
	install -m 644 config/auditq-alerts.yml $(DESTDIR)$(PREFIX)/share/auditq/auditq-alerts.yml
	@if [ -n "$(DESTDIR)" ]; then \
	    echo "make install: staged in DESTDIR; run ldconfig on the target once the files are in $(PREFIX)/lib"; \
	elif ! ldconfig; then \
	    echo "make install: ldconfig failed (not root?): run 'sudo ldconfig' so that programs find $(LIB_SONAME)"; \
	elif ! ldconfig -p | grep -qF '=> $(PREFIX)/lib/$(LIB_SONAME)'; then \
	    echo "make install: $(PREFIX)/lib is not in the run-time linker's path: add it to /etc/ld.so.conf.d/auditq.conf and run ldconfig, or set LD_LIBRARY_PATH=$(PREFIX)/lib"; \
	else \
	    echo "make install: ldconfig: $(LIB_SONAME) => $(PREFIX)/lib/$(LIB_SONAME)"; \
	fi

# Removes exactly what install installed (the same PREFIX and DESTDIR), and
# share/auditq if that leaves it empty; other directories may be shared.
uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/,$(INSTALLED))
	rmdir $(DESTDIR)$(PREFIX)/share/auditq 2>/dev/null || true
	@if [ -z "$(DESTDIR)" ] && ! ldconfig; then \
	    echo "make uninstall: ldconfig failed (not root?): run 'sudo ldconfig' to drop $(LIB_SONAME) from its cache"; \
	fi

clean:
	rm -rf $(BUILD) build-asan build-tsan build-valgrind build-fuzz bindings/node/build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
