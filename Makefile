# Builds the kernel side: vmlinux.h (from this kernel's BTF, never committed),
# the CO-RE BPF object, its libbpf skeleton, the native probe, and the test
# fixtures. `npm run build` calls this; so does scripts/setup.sh.
BUILD    := build
CLANG    ?= clang
BPFTOOL  ?= bpftool
CC       ?= gcc
ARCH     := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
BTF      ?= /sys/kernel/btf/vmlinux
CFLAGS   ?= -O2 -g -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers

.PHONY: all probe fixtures clean
all: probe fixtures

probe: $(BUILD)/kspan-probe

$(BUILD):
	@mkdir -p $@

$(BUILD)/vmlinux.h: | $(BUILD)
	@test -r $(BTF) || { echo "kspan: $(BTF) missing: the kernel has no BTF (CONFIG_DEBUG_INFO_BTF)"; exit 1; }
	$(BPFTOOL) btf dump file $(BTF) format c > $@.tmp && mv $@.tmp $@

$(BUILD)/kspan.bpf.o: bpf/kspan.bpf.c bpf/kspan.h $(BUILD)/vmlinux.h
	$(CLANG) -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -I$(BUILD) -Ibpf -Wall -Wno-unused-function \
		-c bpf/kspan.bpf.c -o $@

$(BUILD)/kspan.skel.h: $(BUILD)/kspan.bpf.o
	$(BPFTOOL) gen skeleton $< name kspan_bpf > $@.tmp && mv $@.tmp $@

$(BUILD)/kspan-probe: native/kspan-probe.c bpf/kspan.h $(BUILD)/kspan.skel.h
	$(CC) $(CFLAGS) -I$(BUILD) -Ibpf -Inative native/kspan-probe.c -o $@ -lbpf -lelf -lz

fixtures:
	@$(MAKE) -s -C bench/workloads
	@$(MAKE) -s -C test/fixtures

clean:
	rm -rf $(BUILD)
	@$(MAKE) -s -C test/fixtures clean
	@$(MAKE) -s -C bench/workloads clean
