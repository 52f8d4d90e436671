# vlm - sparse Mixture-of-Experts vision-language models from the shell.
#
#   make            library and programs into bin/
#   make check      install missing Debian packages, build, run every test
#   make check-valgrind  the unit tests under valgrind memcheck
#   make demo       the main job end to end
#   make bench      benchmarks (speed is never a test)
#   make install PREFIX=/usr/local
#   make SANITIZE=1 check    ASan + UBSan build in build-san/
#   make CUDA=1     also compile kernels/cuda (default when nvcc is found)
#   make MPI=0      without MPI (default: with it when mpicc is found)

VERSION  = 0.1.0
PREFIX  ?= /usr/local
MANDIR  ?= $(PREFIX)/share/man
SHARED  ?= ../shared
SANITIZE ?= 0

NVCC ?= $(firstword $(shell command -v nvcc 2>/dev/null) \
	$(wildcard /usr/local/cuda/bin/nvcc))
ifeq ($(SANITIZE),1)
BUILD ?= build-san
BINDIR ?= $(BUILD)/bin
CUDA   = 0
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
else
BUILD ?= build
BINDIR ?= bin
CUDA  ?= $(if $(NVCC),1,0)
endif

PKGS     = openblas libpng jansson zlib libarchive libwebp
PKGCFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKGLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread \
	-Ilibcore -Ikernels -DVLM_VERSION='"$(VERSION)"' $(PKGCFLAGS) $(SANFLAGS)
LDFLAGS += -pthread $(SANFLAGS)
LDLIBS  += $(PKGLIBS) -ljpeg -lm

LIB_SRC  = $(wildcard libcore/*/*.c kernels/cpu/*.c)
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o)
ifeq ($(CUDA),1)
# the cuda backend is a shared object the programs load when asked for
# cuda (kernels.h): they run without the CUDA libraries or a driver
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CU_SRC   = $(wildcard kernels/cuda/*.cu)
CU_OBJ   = $(CU_SRC:%.cu=$(BUILD)/%.o)
CUDA_SO  = $(BUILD)/libvlm-cuda.so
CFLAGS  += -DVLM_CUDA=1 -DVLM_CUDA_SO='"$(abspath $(CUDA_SO))"'
NVFLAGS ?= -O2 -std=c++17 -Ilibcore -Ikernels -Xcompiler -fPIC \
	-gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=sm_80 \
	-gencode arch=compute_90,code=compute_90
CUDA_LIBS = -L$(CUDA_HOME)/lib64 -Xlinker -rpath,$(CUDA_HOME)/lib64 \
	-lcublas -lcudart
# NCCL (kernels/cuda/comm-nccl.cu) where the toolkit has it (lib, not lib64)
ifneq ($(wildcard $(CUDA_HOME)/include/nccl.h),)
NVFLAGS += -DVLM_NCCL=1
CUDA_LIBS += -L$(CUDA_HOME)/lib -Xlinker -rpath,$(CUDA_HOME)/lib -lnccl
endif
endif
LDLIBS  += -ldl
# MPI (libcore/train/comm-mpi.c) when OpenMPI's mpicc is found; MPI=0 off
MPICC ?= $(shell command -v mpicc 2>/dev/null)
MPI   ?= $(if $(MPICC),1,0)
ifeq ($(MPI),1)
CFLAGS  += -DVLM_MPI=1 $(shell $(MPICC) --showme:compile)
LDLIBS  += $(shell $(MPICC) --showme:link)
endif
LIB      = $(BUILD)/libvlm.a

PROGS    = vlm-convert vlm-embed vlm-eval vlm-train vlm-route-stats \
	   vlm-caption
BINS     = $(PROGS:%=$(BINDIR)/%)
TEST_SRC = $(wildcard tests/test-*.c)
TESTS    = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC = $(wildcard tests/bench-*.c)
BENCHES  = $(BENCH_SRC:tests/%.c=$(BUILD)/tests/%)
MANS     = $(wildcard man/*.[157])

all: $(BINS) $(CUDA_SO)

# Each object depends on the headers it includes: gcc -MMD -MP writes them
# into a .d file beside it, read below. An object without its .d (built
# before there were any) depends on every header instead, so it cannot
# be kept stale: a missing .d alone does not rebuild it (.SECONDARY).
.SECONDEXPANSION:
ALL_HDRS = $(wildcard libcore/*.h libcore/*/*.h kernels/*.h cmd/*.h tests/*.h)
hdrs_unless_d = $(if $(wildcard $(1:.o=.d)),,$(ALL_HDRS))
$(BUILD)/%.o: %.c $$(call hdrs_unless_d,$$@)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# the fast GELU's branch-free selects vectorise only if compares may not trap
$(BUILD)/kernels/cpu/act.o: CFLAGS += -fno-trapping-math
$(BUILD)/kernels/cpu/attention.o: CFLAGS += -fno-trapping-math

$(BUILD)/%.o: %.cu $$(call hdrs_unless_d,$$@)
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -MMD -MP -c -o $@ $<

$(CUDA_SO): $(CU_OBJ)
	$(NVCC) -shared -o $@ $^ $(CUDA_LIBS)

$(LIB): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# a program is cmd/vlm-NAME.c plus its verb files cmd/NAME-*.c
verb_objs = $(patsubst %.c,$(BUILD)/%.o,$(wildcard cmd/$(1)-*.c))
$(BINDIR)/vlm-%: $(BUILD)/cmd/vlm-%.o $$(call verb_objs,$$*) \
		$(BUILD)/cmd/common.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# the op tests (test-*ops*) share the harness and cases in tests/ops-*.c
OPS_SRC  = $(wildcard tests/ops-*.c)
ops_src  = $(if $(findstring ops,$(1)),$(OPS_SRC))
$(BUILD)/tests/%: tests/%.c $$(call ops_src,$$*) \
		$$(call hdrs_unless_d,$$@.o) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -Itests $(LDFLAGS) -o $@ $(filter %.c,$^) \
		$(LIB) $(LDLIBS) -lcmocka

# every libcore and command header compiles on its own (includes what it
# needs; commands include the subsystem headers they use, not vlm.h)
HEADERS  = $(wildcard libcore/*.h libcore/*/*.h cmd/*.h)
HDR_OK   = $(HEADERS:%=$(BUILD)/%.ok)
$(BUILD)/%.h.ok: %.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fsyntax-only -MMD -MP -MF $@.d -MT $@ -x c $<
	@touch $@

tests: $(TESTS) $(HDR_OK) $(CUDA_SO)

DEPS = $(LIB_OBJ:.o=.d) $(CU_OBJ:.o=.d) $(TESTS:=.d) $(BENCHES:=.d) \
	$(HDR_OK:=.d) \
	$(patsubst %.c,$(BUILD)/%.d,$(wildcard cmd/*.c))
-include $(DEPS)

deps:
	@sh .ci/deps

# Unit tests (cmocka), CLI tests (shell), man pages, examples. Every
# runner runs; the target fails if any did.
check: deps
	@$(MAKE) --no-print-directory all tests fuzz-replay
	@SHARED=$(SHARED) BUILD=$(BUILD) BIN=$(BINDIR) sh tests/run $(TESTS)

# The unit tests under valgrind memcheck (not in check: minutes): a memory
# error or a definitely lost block fails. VALGRIND_SKIP="test-x ..." leaves
# programs out (counted as skipped).
check-valgrind:
	@[ "$(SANITIZE)" != 1 ] || { echo "check-valgrind: not with" \
	    "SANITIZE=1 (ASan and valgrind exclude each other)" >&2; exit 2; }
	@$(MAKE) --no-print-directory all tests
	@SHARED=$(SHARED) BIN=$(BINDIR) sh tests/valgrind.sh $(TESTS)

demo: deps
	@$(MAKE) --no-print-directory all
	@sh examples/demo.sh

# bench-gemm measures oneDNN's bf16 matmul beside ours where libdnnl is
$(BUILD)/tests/bench-gemm: LDLIBS += $(if $(wildcard \
	/usr/include/oneapi/dnnl/dnnl.h),-ldnnl -lgomp)

bench: all $(BENCHES)
	@BUILD=$(BUILD) BIN=$(BINDIR) sh tests/bench.sh $(BENCHES)

install: all
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7
	cp $(BINS) $(DESTDIR)$(PREFIX)/bin/
	for m in $(MANS); do s=$${m##*.}; \
		cp $$m $(DESTDIR)$(MANDIR)/man$$s/; done

fmt:
	clang-format -i libcore/*.h libcore/*/*.[ch] kernels/*.h kernels/cpu/*.c \
		cmd/*.c tests/*.[ch]

clean:
	rm -rf build build-san build-fuzz bin

.SECONDARY:
.PHONY: all tests deps check check-valgrind demo bench install fmt clean

# ---- fuzzing (tests/fuzz) ---------------------------------------------
#   make fuzz FUZZ_SECONDS=60   each harness under libFuzzer (clang-14)
#   check builds every harness with gcc and tests/fuzz/replay.c instead,
#   and tests/cli-fuzz-replay.sh replays the corpus and the crashes.
#   VLM_FUZZ: libpng ignores checksums (mutated chunks keep old CRCs).
FUZZ_NAMES  = $(patsubst tests/fuzz/fuzz-%.c,%,$(wildcard tests/fuzz/fuzz-*.c))
FUZZ_REPLAY = $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz-%)
FUZZ_SECONDS ?= 60
FUZZ_CC    ?= clang-14
FUZZ_DIR   ?= build-fuzz
FUZZ_CFLAGS = -O1 -g -std=c11 -D_GNU_SOURCE -DVLM_FUZZ -pthread -Ilibcore \
	-Ikernels \
	-DVLM_VERSION='"$(VERSION)"' $(PKGCFLAGS) -fno-omit-frame-pointer \
	-fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_OBJ    = $(LIB_SRC:%.c=$(FUZZ_DIR)/%.o)

$(BUILD)/fuzz/fuzz-%: tests/fuzz/fuzz-%.c tests/fuzz/replay.c \
		$(wildcard tests/fuzz/*.h) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests/fuzz $(LDFLAGS) -o $@ $< tests/fuzz/replay.c \
		$(LIB) $(LDLIBS)

fuzz-replay: $(FUZZ_REPLAY)

$(FUZZ_DIR)/%.o: %.c $(HEADERS) $(wildcard kernels/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_DIR)/fuzz-%: tests/fuzz/fuzz-%.c $(wildcard tests/fuzz/*.h) \
		$(FUZZ_OBJ)
	@echo "$(FUZZ_CC) -fsanitize=fuzzer -o $@ $< (libcore, kernels)"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Itests/fuzz -o $@ $< \
		$(FUZZ_OBJ) $(PKGLIBS) -ljpeg -lm

fuzz-build: $(FUZZ_NAMES:%=$(FUZZ_DIR)/fuzz-%)

fuzz:
	@sh .ci/deps clang-14 libclang-rt-14-dev
	@$(MAKE) --no-print-directory fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/fuzz/run.sh $(FUZZ_DIR) \
		$(FUZZ_NAMES)

.PHONY: fuzz fuzz-build fuzz-replay
