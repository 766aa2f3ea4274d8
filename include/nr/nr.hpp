// nr/nr.hpp — the umbrella header: everything a program needs to build, train and evaluate.
#pragma once

#include "nr/config.hpp"
#include "nr/core/error.hpp"
#include "nr/core/rng.hpp"
#include "nr/core/shape.hpp"
#include "nr/core/tensor.hpp"
#include "nr/backend/cpu/gemm.hpp"
#include "nr/backend/cpu/threads.hpp"
#include "nr/autograd/backward.hpp"
#include "nr/autograd/tape.hpp"
#include "nr/autograd/var.hpp"
#include "nr/ops/matmul.hpp"
