// The files `troupe new` writes (tools/troupe/templates/, compiled in): mesh/… is a
// project of two services, service/… one service added to a project. {{mesh}},
// {{mesh_ns}}, {{name}} and {{Name}} in a file are replaced when it is written.
#pragma once

#include <string_view>
#include <vector>

namespace troupe::cli::templates {

struct File {
  std::string_view path;  // "mesh/services/greeter/main.cpp"
  std::string_view text;
  bool executable;
};

const std::vector<File>& files();

}  // namespace troupe::cli::templates
