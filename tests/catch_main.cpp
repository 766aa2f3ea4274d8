// The single Catch2 main() shared by every tests/test_*.cpp executable (compiled once).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
