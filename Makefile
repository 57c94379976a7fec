# sitemon - a plain Makefile.
#   make                 build every program
#   make test            install deps (as root), build, run every test
#   make run             install deps (as root), build, run locally
#   make psql            psql on the local run's database
#   make SAN=1 test      the same under AddressSanitizer + UBSan
#   make fuzz            run every libFuzzer target FUZZ_SECONDS (fuzz/README.md)
#   make install PREFIX=/usr/local DESTDIR=

PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
UNITDIR  ?= $(PREFIX)/lib/systemd/system

CC       ?= cc
PKG_CONFIG ?= pkg-config
PKGS     = libcurl rdkafka libpq jansson yaml-0.1 libpcre2-8 openssl

CFLAGS   ?= -O2 -g
WARN     = -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN    += -Werror
endif
ifeq ($(SAN),1)
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS = $(WARN) -D_GNU_SOURCE -pthread -Ilib $(PKG_CFLAGS) $(SANFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(SANFLAGS) -pthread -Wl,--as-needed $(LDFLAGS)
LDLIBS   = $(PKG_LIBS) -lm

PROGS    = sm-schedule sm-check sm-kafka-pub sm-kafka-sub sm-pg-write sm-devbroker sm-alert sm-notify sm-report
BINS     = $(foreach p,$(PROGS),tools/$(p)/$(p))
LIB_SRC  = $(wildcard lib/*.c)
LIB_OBJ  = $(LIB_SRC:.c=.o)
UNIT_SRC = $(wildcard tests/unit/*.c)
UNIT_BIN = $(UNIT_SRC:.c=)
HDRS     = $(wildcard lib/*.h) $(wildcard tools/*/*.h) $(wildcard tests/unit/*.h)

all: $(BINS) $(UNIT_BIN)

# The flags of the last build: when they change (SAN=1 after a plain
# build, say) every object is rebuilt, never mixed.  (-Werror changes
# no object, so it is not one of them.)
BUILD_FLAGS = $(CC) $(CFLAGS) $(SANFLAGS) $(LDFLAGS) $(PKG_CFLAGS) $(LDLIBS)
.build-flags: FORCE
	@echo '$(BUILD_FLAGS)' | cmp -s - $@ || echo '$(BUILD_FLAGS)' >$@

lib/libsm.a: $(LIB_OBJ)
	$(AR) rcs $@ $(LIB_OBJ)

%.o: %.c $(HDRS) .build-flags
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

.SECONDEXPANSION:
$(BINS): $$(patsubst %.c,%.o,$$(wildcard $$(dir $$@)*.c)) lib/libsm.a
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) lib/libsm.a $(LDLIBS)

tests/unit/%: tests/unit/%.o lib/libsm.a
	$(CC) $(ALL_LDFLAGS) -o $@ $< lib/libsm.a $(LDLIBS)

# sm-alert (alerts:) and sm-report (slo:) read sites.yaml with sm-schedule's loader.
SCHED_LOADER = tools/sm-schedule/config.o tools/sm-schedule/alerts.o \
	tools/sm-schedule/sched.o tools/sm-schedule/subst.o \
	tools/sm-schedule/suggest.o tools/sm-schedule/slo.o \
	tools/sm-schedule/recenc.o
tools/sm-alert/sm-alert tools/sm-report/sm-report: $(SCHED_LOADER)

# A unit test of a program's own part links that part's object.
tests/unit/test_pgw_row: tests/unit/test_pgw_row.o tools/sm-pg-write/row.o tools/sm-pg-write/copybin.o lib/libsm.a
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) lib/libsm.a $(LDLIBS)

deps:
	@scripts/install-deps

test: deps
	$(MAKE) WERROR=1 all
	$(MAKE) fuzz-build
	tests/run

check: all
	tests/run

run: deps all
	scripts/sm-local

# psql on the database of a running `make run` (or SM_PG_DSN).
psql:
	@scripts/sm-local --psql

bench: all
	bench/run

soak: all
	tests/run tests/soak/*.bats

install: all
	mkdir -p $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5
	for p in $(PROGS); do install -m 755 tools/$$p/$$p $(DESTDIR)$(BINDIR)/$$p; done
	for m in man/*.1; do install -m 644 $$m $(DESTDIR)$(MANDIR)/man1/; done
	for m in man/*.5; do [ -e "$$m" ] || continue; install -m 644 $$m $(DESTDIR)$(MANDIR)/man5/; done
	install -m 755 scripts/sm-producer scripts/sm-consumer scripts/sm-alerting $(DESTDIR)$(BINDIR)/
	mkdir -p $(DESTDIR)$(UNITDIR)
	for u in scripts/systemd/*.service.in scripts/systemd/*.timer.in; do \
		sed 's|@BINDIR@|$(BINDIR)|g' $$u > $(DESTDIR)$(UNITDIR)/$$(basename $$u .in); \
	done

# ---- fuzzing: libFuzzer targets (fuzz/fuzz_*.c), built with clang apart
# from the main build (objects in fuzz/build/).  `make fuzz` runs each
# target FUZZ_SECONDS and prints its executions per second.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 1
FUZZ_DIR      = fuzz/build
FUZZ_CFLAGS   = -std=c11 -g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE -pthread \
                -Ilib $(PKG_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined \
                -fno-sanitize-recover=undefined
FUZZ_LDFLAGS  = -fsanitize=fuzzer,address,undefined -pthread
FUZZ_TARGETS  = $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_BINS     = $(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGETS))
FUZZ_LIB_OBJ  = $(patsubst %.c,$(FUZZ_DIR)/%.o,$(LIB_SRC))
FUZZ_HDRS     = $(HDRS) fuzz/fuzz.h

$(FUZZ_DIR)/%.o: %.c $(FUZZ_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

# The program parts a target links.
$(FUZZ_DIR)/fuzz_sites_yaml: $(addprefix $(FUZZ_DIR)/,$(SCHED_LOADER))
$(FUZZ_DIR)/fuzz_pgrow: $(addprefix $(FUZZ_DIR)/tools/sm-pg-write/,row.o copybin.o)
$(FUZZ_DIR)/fuzz_alert_input: $(FUZZ_DIR)/tools/sm-alert/input.o
$(FUZZ_DIR)/fuzz_alert_checkpoint: $(addprefix $(FUZZ_DIR)/tools/sm-alert/,engine.o rules.o) \
	$(addprefix $(FUZZ_DIR)/,$(SCHED_LOADER))
$(FUZZ_DIR)/fuzz_event: $(addprefix $(FUZZ_DIR)/tools/sm-notify/,fastev.o config.o rawbody.o render.o)
$(FUZZ_DIR)/fuzz/fuzz_pgrow.o: tests/unit/test_pgw_row.c

$(FUZZ_BINS): $(FUZZ_DIR)/%: $(FUZZ_DIR)/fuzz/%.o $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(FUZZ_LDFLAGS) -o $@ $(filter %.o,$^) $(LDLIBS)

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	fuzz/run -t $(FUZZ_SECONDS) -j $(FUZZ_JOBS)

clean:
	rm -f .build-flags lib/*.o lib/libsm.a tools/*/*.o $(BINS) tests/unit/*.o $(UNIT_BIN)
	rm -rf $(FUZZ_DIR)

.PHONY: all deps test check run psql bench soak install clean fuzz fuzz-build FORCE
