#!/usr/bin/python3
"""embed.py OUT NAME=FILE...: writes a C++ file defining each NAME as a
std::string_view over FILE's bytes, in troupe::gateway::assets (see assets.hpp)."""
import sys

out, pairs = sys.argv[1], sys.argv[2:]
lines = ['// Made by tools/gateway/embed.py at build time; do not edit.',
         '#include "assets.hpp"', '', 'namespace troupe::gateway::assets {', 'namespace {']
for pair in pairs:
    name, path = pair.split('=', 1)
    data = open(path, 'rb').read()
    lines.append(f'const char k_{name}[] = {{')
    for i in range(0, len(data), 24):
        lines.append('  ' + ', '.join(str(b if b < 128 else b - 256) for b in data[i:i + 24]) + ',')
    lines.append('  0};')
lines.append('}  // namespace')
for pair in pairs:
    name = pair.split('=', 1)[0]
    lines.append(f'extern const std::string_view {name}(k_{name}, sizeof k_{name} - 1);')
lines.append('}  // namespace troupe::gateway::assets')
open(out, 'w').write('\n'.join(lines) + '\n')
