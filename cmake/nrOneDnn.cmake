# nrOneDnn.cmake — defines the imported target nr::onednn (oneDNN, "dnnl", 2.x).
#
# Used by the top-level CMakeLists.txt and, installed next to it, by nrConfig.cmake (where the
# caller checks if(TARGET nr::onednn) instead of failing here). The header and the shared library
# are looked up directly first: Debian's package config for oneDNN (DNNL::dnnl) requires the
# OpenCL headers for its GPU runtime, and fails hard without them, even for CPU-only programs.
# oneDNN's own package config is the fallback (a custom install found through CMAKE_PREFIX_PATH).
if(TARGET nr::onednn)
  return()
endif()

find_path(NR_DNNL_INCLUDE_DIR NAMES oneapi/dnnl/dnnl.hpp DOC "Directory containing oneapi/dnnl/dnnl.hpp")
find_library(NR_DNNL_LIBRARY NAMES dnnl DOC "oneDNN's shared library (libdnnl.so)")
if(NR_DNNL_INCLUDE_DIR AND NR_DNNL_LIBRARY)
  add_library(nr::onednn INTERFACE IMPORTED)
  set_property(TARGET nr::onednn PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${NR_DNNL_INCLUDE_DIR}")
  set_property(TARGET nr::onednn PROPERTY INTERFACE_LINK_LIBRARIES "${NR_DNNL_LIBRARY}")
  return()
endif()

find_package(dnnl CONFIG QUIET)
if(TARGET DNNL::dnnl)
  add_library(nr::onednn INTERFACE IMPORTED)
  set_property(TARGET nr::onednn PROPERTY INTERFACE_LINK_LIBRARIES DNNL::dnnl)
elseif(NOT CMAKE_FIND_PACKAGE_NAME)  # the build itself, not find_package(nr): a hard error
  message(FATAL_ERROR "nr: oneDNN not found (install libdnnl-dev, or set NR_DNNL_INCLUDE_DIR and NR_DNNL_LIBRARY)")
endif()
