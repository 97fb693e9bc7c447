/* The emulator's scheduler: every thread of a block is a fiber (ucontext) on a
 * guarded stack; fibers run in turn until they finish or wait at a barrier
 * (__syncthreads, a warp shuffle), and a barrier opens when every live thread it
 * waits for has arrived. Blocks run one after another. Misuse a GPU would punish
 * silently (divergent barriers, shuffles from absent lanes, deadlock) becomes a
 * launch error that cudaGetLastError reports, with the detail on stderr. */
#include "cuda_emu.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define KILN_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KILN_EMU_ASAN 1
#endif
#endif
#ifdef KILN_EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace kiln_emu {

thread_local uint3 thread_idx, block_idx;
thread_local dim3 block_dim, grid_dim;

namespace {

enum fiber_state { READY, AT_SYNC, AT_WARP, DONE };

struct fiber {
    ucontext_t ctx;
    char *stack = nullptr; /* usable part, above the guard page */
    size_t stack_size = 0;
    fiber_state state = READY;
    uint3 tid{0, 0, 0};
    unsigned lane = 0, warp = 0;
    const char *sync_file = nullptr; /* where it waits at __syncthreads */
    int sync_line = 0;
    unsigned warp_mask = 0; /* the lanes it waits for at a warp barrier */
    void *fake_stack = nullptr;
};

struct warp_slots {
    uint64_t value[32];
    bool posted[32];
};

struct block_run {
    std::vector<fiber> *fibers;
    unsigned nthreads;
    std::vector<warp_slots> slots;
    int current = -1;
    void (*thunk)(void *);
    void *ctx;
    ucontext_t sched;
    const void *sched_stack_bottom = nullptr;
    size_t sched_stack_size = 0;
    bool failed = false;
};

thread_local block_run *g_run;
thread_local std::vector<fiber> g_fibers; /* stacks kept between launches */
thread_local std::vector<unsigned char> g_dynamic_shared;
thread_local cudaError_t g_error = cudaSuccess;

size_t page_size() { return (size_t)sysconf(_SC_PAGESIZE); }

size_t stack_bytes() {
#ifdef KILN_EMU_ASAN
    return 512 * 1024; /* redzones make frames larger */
#else
    return 128 * 1024;
#endif
}

bool ensure_stacks(unsigned n) {
    size_t pg = page_size(), sz = stack_bytes();
    while (g_fibers.size() < n) {
        /* a PROT_NONE page below each stack turns an overflow into a fault, not corruption */
        void *m = mmap(nullptr, sz + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) return false;
        mprotect(m, pg, PROT_NONE);
        fiber f;
        f.stack = (char *)m + pg;
        f.stack_size = sz;
        g_fibers.push_back(f);
    }
    return true;
}

void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fail(const char *fmt, ...) {
    block_run *r = g_run;
    if (r && !r->failed) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "kiln CUDA emulator: block (%u,%u,%u): ", block_idx.x, block_idx.y, block_idx.z);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        r->failed = true;
    }
    if (g_error == cudaSuccess) g_error = cudaErrorLaunchFailure;
}

/* Switches from the running fiber back to the scheduler. */
void yield_to_scheduler() {
    block_run *r = g_run;
    fiber &f = (*r->fibers)[r->current];
#ifdef KILN_EMU_ASAN
    __sanitizer_start_switch_fiber(&f.fake_stack, r->sched_stack_bottom, r->sched_stack_size);
#endif
    swapcontext(&f.ctx, &r->sched);
#ifdef KILN_EMU_ASAN
    __sanitizer_finish_switch_fiber(f.fake_stack, &r->sched_stack_bottom, &r->sched_stack_size);
#endif
}

void fiber_main() {
    block_run *r = g_run;
#ifdef KILN_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &r->sched_stack_bottom, &r->sched_stack_size);
#endif
    r->thunk(r->ctx);
    fiber &f = (*r->fibers)[r->current];
    f.state = DONE;
#ifdef KILN_EMU_ASAN
    __sanitizer_start_switch_fiber(nullptr, r->sched_stack_bottom, r->sched_stack_size);
#endif
    /* returning resumes uc_link, the scheduler */
}

/* Opens every barrier whose waiters are all present. Returns true if any opened. */
bool open_barriers(block_run *r) {
    std::vector<fiber> &fs = *r->fibers;
    unsigned n = r->nthreads;
    bool opened = false;
    /* the block barrier: every live thread at __syncthreads */
    unsigned live = 0, at_sync = 0;
    for (unsigned i = 0; i < n; i++) {
        if (fs[i].state != DONE) live++;
        if (fs[i].state == AT_SYNC) at_sync++;
    }
    if (live && at_sync == live) {
        const fiber *first = nullptr;
        for (unsigned i = 0; i < n; i++) {
            fiber &f = fs[i];
            if (f.state != AT_SYNC) continue;
            if (!first) first = &f;
            else if (f.sync_line != first->sync_line || strcmp(f.sync_file, first->sync_file) != 0)
                fail("divergent __syncthreads: thread %u waits at %s:%d, thread %u at %s:%d", f.tid.x, f.sync_file,
                     f.sync_line, first->tid.x, first->sync_file, first->sync_line);
            f.state = READY;
        }
        return true;
    }
    /* warp barriers: every live lane of the mask present */
    unsigned nwarps = (n + 31) / 32;
    for (unsigned w = 0; w < nwarps; w++) {
        unsigned waiting = 0, mask = 0;
        bool any = false;
        for (unsigned l = 0; l < 32 && w * 32 + l < n; l++) {
            fiber &f = fs[w * 32 + l];
            if (f.state == AT_WARP) {
                waiting |= 1u << l;
                mask |= f.warp_mask;
                any = true;
            }
        }
        if (!any) continue;
        bool ready = true;
        for (unsigned l = 0; l < 32 && w * 32 + l < n; l++)
            if ((mask >> l) & 1u) {
                fiber_state s = fs[w * 32 + l].state;
                if (s != AT_WARP && s != DONE) ready = false;
            }
        if (!ready) continue;
        for (unsigned l = 0; l < 32 && w * 32 + l < n; l++)
            if ((waiting >> l) & 1u) fs[w * 32 + l].state = READY;
        opened = true;
    }
    return opened;
}

const char *state_name(fiber_state s) {
    switch (s) {
    case READY: return "running";
    case AT_SYNC: return "__syncthreads";
    case AT_WARP: return "a warp barrier";
    default: return "exited";
    }
}

/* Runs one block to completion; false when it failed (the error is recorded). */
bool run_block(block_run *r) {
    std::vector<fiber> &fs = *r->fibers;
    unsigned n = r->nthreads;
    dim3 bd = block_dim;
    for (unsigned i = 0; i < n; i++) {
        fiber &f = fs[i];
        f.state = READY;
        f.tid = uint3{i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y)};
        f.lane = i % 32;
        f.warp = i / 32;
        f.fake_stack = nullptr;
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack;
        f.ctx.uc_stack.ss_size = f.stack_size;
        f.ctx.uc_link = &r->sched;
        makecontext(&f.ctx, fiber_main, 0);
    }
    for (warp_slots &s : r->slots) memset(s.posted, 0, sizeof s.posted);
    if (!g_dynamic_shared.empty()) memset(g_dynamic_shared.data(), 0xff, g_dynamic_shared.size());
    /* Threads run in index order between barriers; KILN_EMU_ORDER=reverse runs them
     * backwards, which changes the outcome of many intra-block races. */
    static const bool reverse = [] {
        const char *e = getenv("KILN_EMU_ORDER");
        return e && strcmp(e, "reverse") == 0;
    }();
    for (;;) {
        bool ran = false;
        for (unsigned k = 0; k < n && !r->failed; k++) {
            unsigned i = reverse ? n - 1 - k : k;
            fiber &f = fs[i];
            if (f.state != READY) continue;
            ran = true;
            r->current = (int)i;
            thread_idx = f.tid;
#ifdef KILN_EMU_ASAN
            void *fake = nullptr;
            __sanitizer_start_switch_fiber(&fake, f.stack, f.stack_size);
#endif
            swapcontext(&r->sched, &f.ctx);
#ifdef KILN_EMU_ASAN
            __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
            r->current = -1;
        }
        if (r->failed) return false;
        bool all_done = true;
        for (unsigned i = 0; i < n; i++)
            if (fs[i].state != DONE) all_done = false;
        if (all_done) return true;
        if (open_barriers(r)) continue;
        if (r->failed) return false;
        if (!ran) {
            /* nobody can move: name what each thread of the first stuck warp waits at */
            for (unsigned i = 0; i < n; i++)
                if (fs[i].state != DONE) {
                    fail("deadlock: thread %u waits at %s while other threads of its block cannot reach it "
                         "(a barrier inside divergent code?)",
                         i, state_name(fs[i].state));
                    break;
                }
            return false;
        }
    }
}

} // namespace

void launch(dim3 grid, dim3 block, size_t shmem, void (*thunk)(void *), void *ctx) {
    unsigned long long nthreads = (unsigned long long)block.x * block.y * block.z;
    if (nthreads == 0 || nthreads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
        grid.y > 65535 || grid.z > 65535) {
        fprintf(stderr, "kiln CUDA emulator: invalid launch configuration grid (%u,%u,%u) block (%u,%u,%u)\n",
                grid.x, grid.y, grid.z, block.x, block.y, block.z);
        if (g_error == cudaSuccess) g_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (shmem > 48 * 1024) { /* more needs cudaFuncSetAttribute on a GPU */
        fprintf(stderr, "kiln CUDA emulator: %zu bytes of dynamic shared memory exceed the 48 KiB default\n",
                shmem);
        if (g_error == cudaSuccess) g_error = cudaErrorInvalidValue;
        return;
    }
    if (g_run) { /* a launch from inside a kernel: dynamic parallelism is not emulated */
        fail("kernel launched from device code");
        return;
    }
    if (!ensure_stacks((unsigned)nthreads)) {
        fprintf(stderr, "kiln CUDA emulator: cannot map fiber stacks: %s\n", strerror(errno));
        if (g_error == cudaSuccess) g_error = cudaErrorLaunchFailure;
        return;
    }
    g_dynamic_shared.assign(shmem, 0xff);
    block_run r;
    r.fibers = &g_fibers;
    r.nthreads = (unsigned)nthreads;
    r.slots.resize((r.nthreads + 31) / 32);
    r.thunk = thunk;
    r.ctx = ctx;
    g_run = &r;
    grid_dim = grid;
    block_dim = block;
    for (unsigned z = 0; z < grid.z && !r.failed; z++)
        for (unsigned y = 0; y < grid.y && !r.failed; y++)
            for (unsigned x = 0; x < grid.x && !r.failed; x++) {
                block_idx = uint3{x, y, z};
                run_block(&r);
            }
    g_run = nullptr;
}

void *dynamic_shared(void) { return g_dynamic_shared.empty() ? nullptr : g_dynamic_shared.data(); }

static fiber &self() {
    block_run *r = g_run;
    return (*r->fibers)[r->current];
}

void syncthreads(const char *file, int line) {
    if (!g_run) return;
    fiber &f = self();
    f.state = AT_SYNC;
    f.sync_file = file;
    f.sync_line = line;
    yield_to_scheduler();
}

void syncwarp(unsigned mask) {
    if (!g_run) return;
    fiber &f = self();
    if (!((mask >> f.lane) & 1u)) {
        fail("thread %u calls a warp-synchronous intrinsic with a mask (0x%08x) that leaves out its own lane %u",
             f.tid.x, mask, f.lane);
        return;
    }
    f.state = AT_WARP;
    f.warp_mask = mask;
    yield_to_scheduler();
}

unsigned lane_id(void) { return g_run ? self().lane : 0; }

unsigned active_mask(void) {
    if (!g_run) return 1;
    block_run *r = g_run;
    fiber &me = self();
    unsigned m = 0;
    for (unsigned l = 0; l < 32; l++) {
        unsigned i = me.warp * 32 + l;
        if (i < r->nthreads && (*r->fibers)[i].state != DONE) m |= 1u << l;
    }
    return m;
}

uint64_t exchange(unsigned mask, uint64_t mine, int src_lane) {
    if (!g_run) return mine;
    block_run *r = g_run;
    fiber &me = self();
    warp_slots &s = r->slots[me.warp];
    s.value[me.lane] = mine;
    s.posted[me.lane] = true;
    syncwarp(mask); /* everyone has posted */
    uint64_t v = mine;
    if (src_lane < 0 || src_lane > 31 || !s.posted[src_lane] || !((mask >> src_lane) & 1u))
        fail("thread %u (lane %u) shuffles from lane %d, which did not take part (mask 0x%08x)", me.tid.x, me.lane,
             src_lane, mask);
    else
        v = s.value[src_lane];
    syncwarp(mask); /* everyone has read before the slots are reused */
    s.posted[me.lane] = false;
    return v;
}

unsigned ballot(unsigned mask, int pred) {
    if (!g_run) return pred ? 1u : 0u;
    block_run *r = g_run;
    fiber &me = self();
    warp_slots &s = r->slots[me.warp];
    s.value[me.lane] = pred ? 1 : 0;
    s.posted[me.lane] = true;
    syncwarp(mask);
    unsigned bits = 0;
    for (unsigned l = 0; l < 32; l++)
        if (((mask >> l) & 1u) && s.posted[l] && s.value[l]) bits |= 1u << l;
    syncwarp(mask);
    s.posted[me.lane] = false;
    return bits;
}

} // namespace kiln_emu

cudaError_t cudaGetLastError(void) {
    cudaError_t e = kiln_emu::g_error;
    kiln_emu::g_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return kiln_emu::g_error; }

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    }
    return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulator: see the message on stderr)";
    }
    return "unknown error";
}
