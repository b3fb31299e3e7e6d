"""A topology file (the same TOML the C++ nodes read, docs/operations.md), as a Python
peer needs it: its endpoints, whom it reacts to and sends to, the limits, and under
CURVE the keys and who is admitted on each of its endpoints (docs/protocol.md §8)."""
import os
import stat
import tomllib

import zmq

DEFAULTS = {
    "heartbeat_ms": 500, "durability": "durable", "synchronous": "full", "security": "none",
    "batch_max": 512, "retention_events": 1_000_000, "retention_command_ids": 1_000_000,
    "max_message_bytes": 1 << 20, "max_field_bytes": 65536, "max_dead_letters": 10_000,
    "max_dead_letter_bytes": 64 << 20, "client_queries_per_second": 0, "client_commands_per_second": 0,
}
ENDPOINTS = ("events", "commands", "queries")


class TopologyError(Exception):
    pass


def read_key(path):
    """A key file: the first line that is not empty and not a # comment (Z85, §8)."""
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    return line.encode()
    except OSError as e:
        raise TopologyError(f"{path}: {e.strerror} (make the mesh's keys with `troupe keygen --mesh`)")
    raise TopologyError(f"{path}: holds no key")


def instance_endpoint(endpoint, service, k):
    """Instance k's endpoint of a partitioned service (docs/protocol.md §7.10)."""
    if "{partition}" in endpoint:
        return endpoint.replace("{partition}", str(k))
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint.rpartition(":")
        return f"{host}:{int(port) + 100 * k}" if port.isdigit() else endpoint
    scheme = endpoint.find("://")
    at = endpoint.rfind(service)
    if at > scheme >= 0:
        return endpoint[: at + len(service)] + f".{k}" + endpoint[at + len(service):]
    return f"{endpoint}.{k}"


def expand_partitions(services, state_dir):
    """A service with partitions = N is N services NAME.0 … NAME.N-1 to its peers (each
    its own publisher, endpoints and key pair); a reaction to it is one per instance."""
    out = {}
    for name, svc in services.items():
        n = svc.get("partitions", 1)
        if n <= 1:
            out[name] = svc
            continue
        for k in range(n):
            inst = dict(svc)
            inst["_group"] = name
            # As the C++ loader does: {state_dir} first, then the instance's name.
            # An endpoint listed per instance (a list of N) is taken as listed.
            sub = lambda e: (e[k].replace("{state_dir}", state_dir) if isinstance(e, list)  # noqa: E731
                             else instance_endpoint(e.replace("{state_dir}", state_dir), name, k))
            for which in ("events", "commands", "queries"):
                inst[which] = sub(svc[which])
            if "expose" in svc:
                inst["expose"] = {w: sub(e) for w, e in svc["expose"].items()}
            out[f"{name}.{k}"] = inst
    groups = {s["_group"] for s in out.values() if "_group" in s}
    for svc in out.values():
        reacts = {}
        for pub, types in svc.get("reacts_to", {}).items():
            if pub in groups:
                for inst, spec in out.items():
                    if spec.get("_group") == pub:
                        reacts[inst] = types
            else:
                reacts[pub] = types
        svc["reacts_to"] = reacts
    return out


class Topology:
    def __init__(self, path, service, state_dir=None):
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as e:
            raise TopologyError(f"{path}: {e.strerror}")
        except tomllib.TOMLDecodeError as e:
            raise TopologyError(f"{path}: {e}")
        self.path = path
        mesh = raw.get("mesh", {})
        self.mesh_name = mesh.get("name", "")
        self.settings = dict(DEFAULTS)
        self.settings.update({k: v for k, v in mesh.items() if k in DEFAULTS})
        self.settings.update({k: v for k, v in mesh.get("limits", {}).items() if k in DEFAULTS})
        self.state_dir = state_dir or mesh.get("state_dir", "var")
        self.services = expand_partitions(raw.get("services", {}), self.state_dir)
        self.clients = raw.get("clients", {})
        self.taps = raw.get("taps", {})
        if service not in self.services:
            raise TopologyError(f"{path}: no service '{service}' (it has {', '.join(sorted(self.services))})")
        self.service = service
        me = self.services[service]
        if me.get("partitions", 1) > 1:
            raise TopologyError(f"{path}: service '{service}' is partitioned; the Python peer runs unpartitioned "
                                "services only (docs/operations.md, Partitions)")
        for target in me.get("sends", {}):
            if any(s.get("_group") == target for s in self.services.values()):
                raise TopologyError(f"{path}: service '{service}' sends to '{target}', which is partitioned; the "
                                    "Python peer does not route commands by key yet")
        self.publishes = list(me.get("publishes", []))
        self.accepts = list(me.get("accepts", []))
        self.answers = list(me.get("answers", []))
        self.reacts_to = {p: list(t) for p, t in me.get("reacts_to", {}).items()}
        self.sends = {p: list(t) for p, t in me.get("sends", {}).items()}
        for p in list(self.reacts_to) + list(self.sends):
            if p not in self.services:
                raise TopologyError(f"{path}: service '{service}' names '{p}', which is no service")
        self.curve = self.settings["security"] == "curve"
        self.durable = self.settings["durability"] == "durable"
        self.keys_dir = mesh.get("keys_dir", "{state_dir}/keys").replace("{state_dir}", self.state_dir)

    def heartbeat_s(self):
        return self.settings["heartbeat_ms"] / 1000.0

    def endpoint(self, service, which, for_peer=True):
        svc = self.services[service]
        ep = (svc.get("expose", {}).get(which) if for_peer else None) or svc[which]
        return ep.replace("{state_dir}", self.state_dir)

    def store_path(self):
        # Its own file beside the C++ node's SERVICE.db: a different schema (docs/protocol.md §9).
        return os.path.join(self.state_dir, f"{self.service}.py.db")

    # --- CURVE
    def identities(self):
        return set(self.services) | set(self.clients) | set(self.taps)

    def public_key(self, name):
        table = self.services.get(name) or self.clients.get(name) or self.taps.get(name) or {}
        inline = table.get("public_key")
        return inline.encode() if inline else read_key(os.path.join(self.keys_dir, f"{name}.pub"))

    def secret_key(self):
        path = os.path.join(self.keys_dir, f"{self.service}.key")
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            raise TopologyError(f"{path}: {e.strerror} (make the mesh's keys with `troupe keygen --mesh`)")
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TopologyError(f"{path}: readable by others (mode {stat.S_IMODE(mode):04o}): chmod 600 it")
        secret = read_key(path)
        public = zmq.curve_public(secret)
        inline = self.services[self.service].get("public_key")
        if inline and inline.encode() != public:
            raise TopologyError(f"{path}: does not match the public_key the topology gives {self.service}")
        return public, secret

    def admitted(self, endpoint):
        """Identity names allowed on one of this service's endpoints (operations.md)."""
        me = self.service
        names = set()
        for name, svc in self.services.items():
            reacts = me in svc.get("reacts_to", {})
            sends = me in svc.get("sends", {})
            if (endpoint == "events" and (reacts or sends)) or (endpoint == "commands" and sends) or \
               (endpoint == "queries" and reacts):
                names.add(name)
        for name, client in self.clients.items():
            allowed = client.get(endpoint, [])
            if "*" in allowed or me in allowed or self.services[me].get("_group") in allowed:
                names.add(name)
        if endpoint == "events":
            names |= set(self.taps)
        return names

    def client_rate(self, name, what):
        """A client's queries/commands per second (0: unlimited); services and taps: 0."""
        client = self.clients.get(name)
        if client is None:
            return 0
        return client.get(f"{what}_per_second", self.settings[f"client_{what}_per_second"])
