#!/usr/bin/python3
"""embed.py OUT ROOT FILE...: writes a C++ file holding each FILE (a path under ROOT)
as a troupe::cli::templates::File, for `troupe new` (templates.hpp)."""
import os
import sys

out, root = sys.argv[1], sys.argv[2]
paths = [p for p in sys.argv[3:] if not os.path.samefile(p, __file__)]  # meson passes this script too
lines = ['// Made by tools/troupe/templates/embed.py at build time; do not edit.',
         '#include "templates.hpp"', '', 'namespace troupe::cli::templates {', 'namespace {']
entries = []
for n, path in enumerate(paths):
    data = open(path, 'rb').read()
    lines.append(f'const unsigned char k{n}[] = {{')
    for i in range(0, len(data), 24):
        lines.append('  ' + ', '.join(str(b) for b in data[i:i + 24]) + ',')
    lines.append('  0};')
    rel = os.path.relpath(path, root)
    executable = 'true' if os.access(path, os.X_OK) else 'false'
    entries.append(f'      {{"{rel}", std::string_view(reinterpret_cast<const char*>(k{n}), sizeof k{n} - 1), {executable}}},')
lines.append('}  // namespace')
lines.append('const std::vector<File>& files() {')
lines.append('  static const std::vector<File> all{')
lines += entries
lines.append('  };')
lines.append('  return all;')
lines.append('}')
lines.append('}  // namespace troupe::cli::templates')
open(out, 'w').write('\n'.join(lines) + '\n')
