// tally: the process (../service_main.hpp).
#include "../service_main.hpp"
#include "handlers.hpp"

int main(int argc, char** argv) {
  return {{mesh_ns}}::service_main(argc, argv, "tally", "counts greetings", {{mesh_ns}}::tally::install);
}
