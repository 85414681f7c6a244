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

.PHONY: all probe fixtures clean check-arm64
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

# The loader (kspan-probe.c) and its parts, each a .c with its .h.
PROBE_SRCS := $(addprefix native/,kspan-probe.c options.c output.c groups.c cuda-attach.c elf-sym.c control.c drain.c snapshot.c)
PROBE_HDRS := $(PROBE_SRCS:.c=.h)

$(BUILD)/kspan-probe: $(PROBE_SRCS) $(PROBE_HDRS) bpf/kspan.h $(BUILD)/kspan.skel.h
	$(CC) $(CFLAGS) -I$(BUILD) -Ibpf -Inative $(PROBE_SRCS) -o $@ -lbpf -lelf -lz

# Compile-only check of the arm64 code paths (syscall registers, preempt count)
# on a non-arm64 host: this host's vmlinux.h lacks arm64's struct user_pt_regs,
# which bpf_tracing.h casts to, so a two-line shim supplies it. A real arm64
# build uses that kernel's BTF (make on the arm64 machine).
check-arm64: $(BUILD)/vmlinux.h
	@printf 'struct user_pt_regs { __u64 regs[31]; __u64 sp; __u64 pc; __u64 pstate; };\n' > $(BUILD)/arm64-shim.h
	$(CLANG) -g -O2 -target bpf -D__TARGET_ARCH_arm64 -I$(BUILD) -Ibpf -Wall -Wno-unused-function \
		-include $(BUILD)/vmlinux.h -include $(BUILD)/arm64-shim.h -c bpf/kspan.bpf.c -o $(BUILD)/kspan.arm64-check.o
	@echo "kspan: bpf/kspan.bpf.c compiles for arm64"

fixtures:
	@$(MAKE) -s -C bench/workloads
	@$(MAKE) -s -C test/fixtures

clean:
	rm -rf $(BUILD)
	@$(MAKE) -s -C test/fixtures clean
	@$(MAKE) -s -C bench/workloads clean
