/* The check after every kernel launch: a launch error becomes a kiln error naming
 * the op, file and line; in sync-debug mode (KILN_CUDA_SYNC=1) the stream is also
 * synchronised so an error raised while the kernel runs names this op, not a later one. */
#include "common.cuh"

extern "C" kiln_status kiln_cuda_launch_check(const char *op, void *stream, const char *file, int line) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return kiln__error(KILN_STATUS_BACKEND, "CUDA kernel of op '%s' failed to launch: %s (%s) at %s:%d", op,
                           cudaGetErrorName(e), cudaGetErrorString(e), file, line);
    if (kiln__cuda_sync_debug()) {
        e = cudaStreamSynchronize((cudaStream_t)stream);
        if (e != cudaSuccess)
            return kiln__error(KILN_STATUS_BACKEND,
                               "CUDA kernel of op '%s' failed while running: %s (%s), found by the synchronisation "
                               "after its launch at %s:%d (sync-debug mode)",
                               op, cudaGetErrorName(e), cudaGetErrorString(e), file, line);
    }
    return KILN_STATUS_OK;
}
