// nr/config.hpp — version and build switches.
//
// NR_WITH_CUDA is defined to 1 by the optional nr::cuda target; a CPU-only build never sees CUDA.
#pragma once

#define NR_VERSION_MAJOR 0
#define NR_VERSION_MINOR 1
#define NR_VERSION_PATCH 0

#ifndef NR_WITH_CUDA
#define NR_WITH_CUDA 0
#endif

namespace nr {
inline constexpr const char* version_string = "0.1.0";
}  // namespace nr
