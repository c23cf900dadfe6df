# parley: `make` builds parley.core; see README.md for the rest.
LUA       ?= lua5.4
LUA_INC   ?= $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
CC        ?= cc
CFLAGS    ?= -O2 -g
WARN      := -std=c99 -D_GNU_SOURCE -Wall -Wextra -Werror -pedantic \
             -Wshadow -Wmissing-prototypes -Wstrict-prototypes
PREFIX    ?= /usr/local
LUA_LDIR  ?= $(PREFIX)/share/lua/5.4
LUA_CDIR  ?= $(PREFIX)/lib/lua/5.4
BUSTED    ?= busted --lua=$(LUA)
LIBS      := -lcrypt -lutil -lssl -lcrypto -pthread
FUZZ_SECONDS ?= 60

BUILD ?= build
SRCS := $(wildcard csrc/*.c)
HDRS := $(wildcard csrc/*.h)
OBJS := $(SRCS:csrc/%.c=$(BUILD)/obj/%.o)
CORE := $(BUILD)/parley/core.so

.PHONY: all test demo bench sanitize fuzz hardening install deps deps-check docs lint rock clean

all: $(CORE)

$(BUILD)/obj/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) $(LUA_INC) -fPIC -c $< -o $@

$(CORE): $(OBJS)
	@mkdir -p $(@D)
	$(CC) -shared $(CFLAGS) -o $@ $(OBJS) $(LDFLAGS) $(LIBS)

# Debian packages the build, the specs and the interop peers need.
deps:
	@.ci/deps install

deps-check:
	@.ci/deps check || .ci/deps install

test: deps-check all
	$(BUSTED) $(BUSTED_ARGS)

demo: deps-check all
	$(LUA) bin/parley lab --tour

bench: deps-check all
	bench/run

# The whole suite with the C module built with ASan + UBSan, in its own
# build directory.  lua5.4 is not instrumented, so the runtime is preloaded,
# with libcrypt beside it: ASan intercepts crypt_r and must find the real
# one at start-up, before core.so pulls libcrypt in.
ASAN_BUILD := build/asan
sanitize: deps-check
	$(MAKE) BUILD=$(ASAN_BUILD) CC=clang \
	    CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined" all
	PARLEY_SANITIZE=1 LD_PRELOAD="$$(clang -print-file-name=libclang_rt.asan-x86_64.so) libcrypt.so.1" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    $(BUSTED) --cpath="$(ASAN_BUILD)/?.so" $(BUSTED_ARGS)

# One libFuzzer binary per fuzz/<codec>_fuzz.c, each run FUZZ_SECONDS.
FUZZERS := $(patsubst fuzz/%_fuzz.c,fuzz/build/%_fuzz,$(wildcard fuzz/*_fuzz.c))
fuzz/build/%_fuzz: fuzz/%_fuzz.c $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Icsrc $(LUA_INC) \
	    $< $(SRCS) -o $@ -llua5.4 -lm $(LIBS)
fuzz: deps-check $(FUZZERS)
	@for f in $(FUZZERS); do n=$$(basename $$f _fuzz); mkdir -p fuzz/corpus/$$n; \
	    echo "== $$n ($(FUZZ_SECONDS)s)"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 fuzz/corpus/$$n || exit 1; done

# Hardening (issue 11): LD_PRELOAD shims that are test tools, never part
# of core.so, and the long runs (see HARDENING.md, FUZZING.md).
# HARDENING_FUZZ_SECONDS=0 skips the fuzzing campaign.
HARDENING_FUZZ_SECONDS ?= 600
build/hardening/%.so: hardening/%.c
	@mkdir -p $(@D)
	$(CC) -std=c99 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes \
	    -Wstrict-prototypes -O2 -g -fPIC -shared $< -o $@ -ldl
hardening: deps-check all build/hardening/faultnet.so build/hardening/allocfail.so
	hardening/run $(HARDENING_FUZZ_SECONDS)

install: all
	install -d $(DESTDIR)$(LUA_CDIR)/parley $(DESTDIR)$(LUA_LDIR) $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(CORE) $(DESTDIR)$(LUA_CDIR)/parley/core.so
	cd lua && find parley -name '*.lua' -exec install -D -m 644 {} $(DESTDIR)$(LUA_LDIR)/{} \;
	install -m 755 bin/parley $(DESTDIR)$(PREFIX)/bin/parley

docs:
	ldoc .

# luacheck over the whole tree (.luacheckrc says what is deliberate).
lint:
	luacheck .

# The rock must build and install into a private tree (CI checks it).
rock:
	.ci/rock-check

clean:
	rm -rf build fuzz/build
