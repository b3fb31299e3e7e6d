// {{name}}: the process (../service_main.hpp).
#include "../service_main.hpp"
#include "handlers.hpp"

int main(int argc, char** argv) {
  return {{mesh_ns}}::service_main(argc, argv, "{{name}}", "records values", {{mesh_ns}}::{{name}}::install);
}
