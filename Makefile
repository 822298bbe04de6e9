# linode-coder: one Makefile, no configure step.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share/linode-coder
LIBEXECDIR ?= $(PREFIX)/libexec/linode-coder
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
WERROR ?= -Werror
CFLAGS ?= -O2 -g
override CFLAGS += -std=c11 -D_POSIX_C_SOURCE=200809L -Ilib -Wall -Wextra \
	$(WERROR) -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
	-DLC_DATADIR='"$(DATADIR)"' -DLC_LIBEXECDIR='"$(LIBEXECDIR)"'
BATS ?= bats
BATSFLAGS ?= $(if $(shell command -v parallel 2>/dev/null),--jobs 2 --no-parallelize-within-files,)

TOOLS = coder lc-sessions lc-create lc-destroy lc-cloudinit lc-gpuprobe \
	lc-heal lc-watch lc-ssh lc-account lc-bench

# Each tool links only the libraries it uses: libcurl alone costs ~6 ms
# of start-up in shared-object loading, so tools that never speak HTTP
# must not pay it.
LIBS_coder        = -ljq
LIBS_lc-sessions  = -ljq -lpthread
LIBS_lc-create    = -lcurl -ljq -lssh2 -lpthread
LIBS_lc-destroy   = -lcurl -ljq -lssh2 -lpthread
LIBS_lc-cloudinit = -ljq -lyaml
LIBS_lc-gpuprobe  = -ljq -lssh2
LIBS_lc-heal      = -ljq -lssh2
LIBS_lc-watch     = -lcurl -ljq -lssh2 -lpthread
LIBS_lc-ssh       = -ljq -lssh2
LIBS_lc-account   = -lcurl -ljq -lpthread
LIBS_lc-bench     = -lcurl -ljq -lssh2 -lyaml -lpthread

# Programs the tools exec, never users: lc-sessions runs lc-sessions-api
# for cleanup and reconcile, so that listing the ledger stays free of
# libcurl. Built beside bin/ as ../libexec/linode-coder/, as installed.
HELPERS = lc-sessions-api
LIBS_lc-sessions-api = -lcurl -ljq -lpthread

LIBOBJS = $(patsubst %.c,%.o,$(wildcard lib/*.c))
HDRS = $(wildcard lib/*.h)

all: $(TOOLS:%=bin/%) $(HELPERS:%=libexec/linode-coder/%)

lib/%.o: lib/%.c $(HDRS)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

bin/%.o: bin/%.c $(HDRS)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

lib/liblc.a: $(LIBOBJS)
	rm -f $@
	$(AR) rcs $@ $(LIBOBJS)

bin/%: bin/%.o lib/liblc.a
	$(CC) $(LDFLAGS) -o $@ $< lib/liblc.a $(LIBS_$*) -lm

libexec/%.o: libexec/%.c $(HDRS)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

libexec/linode-coder/%: libexec/%.o lib/liblc.a
	@mkdir -p libexec/linode-coder
	$(CC) $(LDFLAGS) -o $@ $< lib/liblc.a $(LIBS_$*) -lm

TESTS ?= tests/

check: all
	PATH="$(CURDIR)/bin:$$PATH" $(BATS) $(BATSFLAGS) $(TESTS)

# The sanitizers run every test but the VM boots (tests/vm-boot*.bats), which
# spend their minutes in systemd and cloud-init, not in our C.
ASAN_TESTS = $(filter-out tests/vm-boot%,$(wildcard tests/*.bats))

asan:
	$(MAKE) clean
	$(MAKE) check TESTS='$(ASAN_TESTS)' CFLAGS='-O1 -g -fno-omit-frame-pointer \
		-fsanitize=address,undefined -fno-sanitize-recover=all' \
		LDFLAGS='-fsanitize=address,undefined'
	$(MAKE) clean

lint:
	mandoc -Tlint -Wwarning man/*.[157]
	shellcheck -s bash tests/*.bats tests/helpers/*.bash $(wildcard tests/helpers/vm-bin/*) \
		tests/helpers/clock-at tests/helpers/errcodes-mdoc $(wildcard tests/vm/*/usr/bin/*) \
		$(filter-out %/image,$(wildcard tests/vm/*/usr/lib/lc-standin/*)) \
		tests/vm/docker.io/usr/lib/lc-standin/image/bin/vllm \
		completions/bash/* bench/*.sh .ci/run
	python3 -c 'import sys; [compile(open(f).read(), f, "exec") for f in sys.argv[1:]]' \
		$(wildcard tests/servers/*.py bench/*.py) \
		tests/vm/docker.io/usr/lib/lc-standin/image/bin/ray \
		tests/vm/docker.io/usr/lib/lc-standin/image/python/ray/__init__.py
	for f in tests/helpers/*.pl; do perl -wc "$$f" 2>/dev/null || \
		{ perl -wc "$$f"; exit 1; }; done

# The ERROR CODES section of lc-records(5) is made from lib/errcodes.tsv;
# tests/errcodes.bats fails when the two differ.
errcodes-man:
	tests/helpers/errcodes-mdoc lib/errcodes.tsv >man/lc-records.5.codes
	awk -v gen=man/lc-records.5.codes '/^\.Sh ERROR CODES$$/ { \
	    while ((getline l < gen) > 0) print l; skip = 1; next } \
	    skip && /^\.Sh / { skip = 0 } !skip' man/lc-records.5 >man/lc-records.5.new
	rm -f man/lc-records.5.codes
	mv man/lc-records.5.new man/lc-records.5

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7 \
		$(DESTDIR)$(DATADIR) $(DESTDIR)$(BASHCOMPDIR) \
		$(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	install -m 0755 $(TOOLS:%=bin/%) $(DESTDIR)$(BINDIR)
	install -d $(DESTDIR)$(LIBEXECDIR)
	install -m 0755 $(HELPERS:%=libexec/linode-coder/%) $(DESTDIR)$(LIBEXECDIR)
	install -m 0644 man/*.1 $(DESTDIR)$(MANDIR)/man1
	install -m 0644 man/*.5 $(DESTDIR)$(MANDIR)/man5
	install -m 0644 man/*.7 $(DESTDIR)$(MANDIR)/man7
	if [ -f presets.yaml ]; then install -m 0644 presets.yaml $(DESTDIR)$(DATADIR); fi
	install -m 0644 completions/bash/* $(DESTDIR)$(BASHCOMPDIR)
	install -m 0644 completions/zsh/* $(DESTDIR)$(ZSHCOMPDIR)
	install -m 0644 completions/fish/* $(DESTDIR)$(FISHCOMPDIR)

uninstall:
	for t in $(TOOLS); do rm -f $(DESTDIR)$(BINDIR)/$$t; done
	for t in $(HELPERS); do rm -f $(DESTDIR)$(LIBEXECDIR)/$$t; done
	-rmdir $(DESTDIR)$(LIBEXECDIR)
	for f in man/*.1; do rm -f $(DESTDIR)$(MANDIR)/man1/$${f#man/}; done
	for f in man/*.5; do rm -f $(DESTDIR)$(MANDIR)/man5/$${f#man/}; done
	for f in man/*.7; do rm -f $(DESTDIR)$(MANDIR)/man7/$${f#man/}; done
	rm -f $(DESTDIR)$(DATADIR)/presets.yaml
	-rmdir $(DESTDIR)$(DATADIR)
	for f in completions/bash/*; do rm -f $(DESTDIR)$(BASHCOMPDIR)/$${f#completions/bash/}; done
	for f in completions/zsh/*; do rm -f $(DESTDIR)$(ZSHCOMPDIR)/$${f#completions/zsh/}; done
	for f in completions/fish/*; do rm -f $(DESTDIR)$(FISHCOMPDIR)/$${f#completions/fish/}; done

clean:
	rm -f bin/*.o lib/*.o libexec/*.o lib/liblc.a $(TOOLS:%=bin/%)
	rm -rf libexec/linode-coder

.PHONY: all check asan lint errcodes-man install uninstall clean
.SECONDARY:
