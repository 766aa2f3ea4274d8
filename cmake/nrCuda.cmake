# nrCuda.cmake — the optional nr::cuda target (included from the top-level CMakeLists.txt).
#
# nr::cuda = nr::nr + the CUDA runtime + cuBLAS + CCCL (thrust / CUB), for programs that include
# the headers under include/nr/backend/cuda/ from their own .cu files. It exists only when NR_BUILD_CUDA
# is ON, which is the default when nr is the top-level project and CMake finds a CUDA compiler
# (nvcc on PATH, or CUDACXX / CMAKE_CUDA_COMPILER). Without a CUDA compiler nr stays CPU-only:
# one STATUS line, nothing else, and nothing of the toolkit is needed.
#
# What this file sets up, and why:
#   CMAKE_CUDA_ARCHITECTURES   90 (Hopper) unless the user or the CUDAARCHS environment variable
#                              chose one; must be set before enable_language(CUDA).
#   -std=c++20 for nvcc        CMake 3.25 does not know how to ask CUDA 13's nvcc for C++20
#                              (CUDA_STANDARD 20 fails at generate time), so the flag is added
#                              explicitly, for CUDA sources only.
#   FMT_CONSTEVAL=, FMT_USE_CONSTEXPR=1
#                              {fmt} 9 disables constexpr under nvcc, which then breaks its own
#                              C++20 code in the host pass, and nvcc's front end rejects its
#                              consteval format-string check. For CUDA sources only, the check
#                              becomes a run-time one and constexpr is turned back on; .cpp files
#                              are untouched.
#   CCCL include directory     CUDA 13 moved thrust / CUB / libcu++ to <toolkit>/include/cccl;
#                              nvcc finds them by itself, a host compiler needs the path.
#
# A project that pulls nr in with add_subdirectory / FetchContent and wants nr::cuda sets
# NR_BUILD_CUDA=ON and should call enable_language(CUDA) in its own top-level directory first
# (CMake wants a language enabled in the highest directory that uses it).

# Look for nvcc only where the answer matters: a top-level build, or a parent project that asked.
if(PROJECT_IS_TOP_LEVEL OR NR_BUILD_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
endif()

if(CMAKE_CUDA_COMPILER AND PROJECT_IS_TOP_LEVEL)
  set(_nr_cuda_default ON)
else()
  set(_nr_cuda_default OFF)
endif()
option(NR_BUILD_CUDA "Define the nr::cuda target (needs the CUDA toolkit) and, with NR_BUILD_TESTS, its tests"
       ${_nr_cuda_default})
unset(_nr_cuda_default)

if(NOT NR_BUILD_CUDA)
  if(NOT PROJECT_IS_TOP_LEVEL)
    message(STATUS "nr: CPU only (set NR_BUILD_CUDA=ON before adding nr to define nr::cuda)")
  elseif(NOT CMAKE_CUDA_COMPILER)
    message(STATUS "nr: no CUDA compiler found; building for the CPU only (nr::cuda is not defined)")
  else()
    message(STATUS "nr: NR_BUILD_CUDA is OFF; nr::cuda is not defined")
  endif()
  return()
endif()

if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR "nr: NR_BUILD_CUDA is ON but CMake found no CUDA compiler. Put nvcc on PATH, "
                      "set CUDACXX or CMAKE_CUDA_COMPILER to it, or configure with -DNR_BUILD_CUDA=OFF.")
endif()

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  set(CMAKE_CUDA_ARCHITECTURES 90 CACHE STRING "CUDA architectures to compile for (nr's default: 90, Hopper)")
endif()
if(NOT CMAKE_CUDA_COMPILER_LOADED)
  enable_language(CUDA)
endif()
find_package(CUDAToolkit REQUIRED)

# thrust / CUB headers: <toolkit>/include/cccl in CUDA 13, <toolkit>/include before.
find_path(NR_CUDA_CCCL_INCLUDE_DIR
  NAMES thrust/version.h
  PATHS ${CUDAToolkit_INCLUDE_DIRS}
  PATH_SUFFIXES cccl ""
  NO_DEFAULT_PATH
  DOC "Directory containing thrust/ and cub/ (CCCL)")
if(NOT NR_CUDA_CCCL_INCLUDE_DIR)
  message(FATAL_ERROR "nr: thrust/version.h not found under ${CUDAToolkit_INCLUDE_DIRS} (CCCL); "
                      "set NR_CUDA_CCCL_INCLUDE_DIR, or configure with -DNR_BUILD_CUDA=OFF")
endif()

add_library(nr_cuda INTERFACE)
add_library(nr::cuda ALIAS nr_cuda)
set_target_properties(nr_cuda PROPERTIES EXPORT_NAME cuda)
target_link_libraries(nr_cuda INTERFACE nr CUDA::cudart CUDA::cublas)
target_compile_definitions(nr_cuda INTERFACE
  NR_WITH_CUDA=1
  $<$<COMPILE_LANGUAGE:CUDA>:FMT_CONSTEVAL=>
  $<$<COMPILE_LANGUAGE:CUDA>:FMT_USE_CONSTEXPR=1>)
target_compile_options(nr_cuda INTERFACE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>)
# The installed package finds CCCL again in nrConfig.cmake (no toolkit path is baked in).
target_include_directories(nr_cuda SYSTEM INTERFACE $<BUILD_INTERFACE:${NR_CUDA_CCCL_INCLUDE_DIR}>)

message(STATUS "nr: nr::cuda enabled (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, "
               "architectures ${CMAKE_CUDA_ARCHITECTURES}, CCCL in ${NR_CUDA_CCCL_INCLUDE_DIR})")
