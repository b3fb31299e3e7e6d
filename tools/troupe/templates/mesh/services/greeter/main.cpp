// greeter: the process (../service_main.hpp).
#include "../service_main.hpp"
#include "handlers.hpp"

int main(int argc, char** argv) {
  return {{mesh_ns}}::service_main(argc, argv, "greeter", "greets", {{mesh_ns}}::greeter::install);
}
