// nr/backend/cuda/cuda.cuh — the CUDA backend in one include (see docs/cuda.md).
//
// Include the headers under nr/backend/cuda/ only from .cu files compiled by nvcc (target nr::cuda):
// they include <cuda_runtime.h>, cuBLAS and CUB, and define kernels.
//
//   check.cuh          NR_CUDA_CHECK, NR_CUBLAS_CHECK, NR_CUDA_CHECK_LAUNCH, CudaError
//   allocator.cuh      CachingAllocator, device_allocator(), AllocatorStats
//   context.cuh        available(), Context (stream + cuBLAS handle), GemmPrecision
//   device_tensor.cuh  DeviceTensor, DeviceIndices (host <-> device copies)
//   launch.cuh         launch sizes, column_sum_acc, to_bf16 / to_f32
//   gemm.cuh           gemm, gemm_bf16, plan_matmul, matmul_forward / matmul_backward
//   elementwise.cuh    add / sub / mul (same shape or row-broadcast), scale
//   rms_norm.cuh       RMSNorm
//   silu_mul.cuh       silu(gate) * up
//   rope.cuh           rotary position embedding (rotate_half)
//   embedding.cuh      embedding lookup, deterministic scatter-add backward
//   softmax.cuh        softmax, cross-entropy with fused log-softmax
//   adamw.cuh          FusedAdamW: one launch per step over every parameter
#pragma once

#include "nr/backend/cuda/adamw.cuh"
#include "nr/backend/cuda/allocator.cuh"
#include "nr/backend/cuda/check.cuh"
#include "nr/backend/cuda/context.cuh"
#include "nr/backend/cuda/device_tensor.cuh"
#include "nr/backend/cuda/elementwise.cuh"
#include "nr/backend/cuda/embedding.cuh"
#include "nr/backend/cuda/gemm.cuh"
#include "nr/backend/cuda/launch.cuh"
#include "nr/backend/cuda/rms_norm.cuh"
#include "nr/backend/cuda/rope.cuh"
#include "nr/backend/cuda/silu_mul.cuh"
#include "nr/backend/cuda/softmax.cuh"
