// Catch2's main, compiled once for every test of the mesh.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
