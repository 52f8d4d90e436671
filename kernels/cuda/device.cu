/*
 * device.cu - the CUDA side's entry point: which devices there are.
 * Built by `make CUDA=1` (the default where nvcc is found) and linked
 * with cudart and cuBLAS. The CUDA kernels proper (same argument lists
 * as kernels/cpu, device pointers) are future work; until they exist the
 * tools run on the CPU backend and say so.
 */
#include <cstdio>

#include <cuda_runtime.h>

extern "C" int
vlm_cuda_device_count(void)
{
	int n = 0;

	if (cudaGetDeviceCount(&n) != cudaSuccess)
		return 0; /* no driver or no device: the CPU serves */
	return n;
}

extern "C" const char *
vlm_cuda_device_name(int i, char *buf, int len)
{
	cudaDeviceProp p;

	if (cudaGetDeviceProperties(&p, i) != cudaSuccess)
		return NULL;
	snprintf(buf, len, "%s (sm_%d%d, %zu MiB)", p.name, p.major, p.minor,
	    p.totalGlobalMem >> 20);
	return buf;
}
