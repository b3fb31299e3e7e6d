"""Message shapes declared in Python: each checks a decoded payload the way troupe's C++
codec does (§3: the field path named in the error) and writes its JSON Schema the way
`$schema` does (§7.8), so a Python service has a contract like any other.

    PaymentCaptured = message("PaymentCaptured", order_id=string, customer=string, amount=int64)
"""


class Invalid(Exception):
    """A payload that does not fit its message: `field 'x': expected integer, got string`."""


def _got(v):
    from .wire import _type_name
    return _type_name(v)


class Shape:
    nullable = False

    def check(self, v, path):
        raise NotImplementedError

    def json_schema(self):
        raise NotImplementedError

    def _fail(self, v, path, expected):
        raise Invalid(f"field '{path}': expected {expected}, got {_got(v)}")


class _Int(Shape):
    def __init__(self, fmt, lo, hi):
        self.fmt, self.lo, self.hi = fmt, lo, hi

    def check(self, v, path):
        if isinstance(v, bool) or not isinstance(v, int):
            self._fail(v, path, "integer")
        if not self.lo <= v <= self.hi:
            raise Invalid(f"field '{path}': {v} does not fit {self.fmt}")
        return v

    def json_schema(self):
        out = {"type": "integer", "format": self.fmt}
        if self.lo == 0:
            out["minimum"] = 0
        return out


class _Simple(Shape):
    def __init__(self, kinds, expected, schema):
        self.kinds, self.expected, self.schema = kinds, expected, schema

    def check(self, v, path):
        if isinstance(v, bool) != (bool in self.kinds) or not isinstance(v, self.kinds):
            self._fail(v, path, self.expected)
        return float(v) if self.expected == "float" else v

    def json_schema(self):
        return dict(self.schema)


int64 = _Int("int64", -(1 << 63), (1 << 63) - 1)
int32 = _Int("int32", -(1 << 31), (1 << 31) - 1)
uint64 = _Int("uint64", 0, (1 << 64) - 1)
uint32 = _Int("uint32", 0, (1 << 32) - 1)
string = _Simple((str,), "string", {"type": "string"})
boolean = _Simple((bool,), "boolean", {"type": "boolean"})
double = _Simple((float, int), "float", {"type": "number", "format": "double"})
binary = _Simple((bytes, bytearray), "binary", {"type": "string", "format": "binary"})


class optional(Shape):
    """A value, nil, or the key absent (§3)."""
    nullable = True

    def __init__(self, inner):
        self.inner = inner

    def check(self, v, path):
        return None if v is None else self.inner.check(v, path)

    def json_schema(self):
        inner = self.inner.json_schema()
        if isinstance(inner.get("type"), str):
            return dict(inner, type=[inner["type"], "null"])
        return {"anyOf": [inner, {"type": "null"}]}


class vector(Shape):
    def __init__(self, inner):
        self.inner = inner

    def check(self, v, path):
        if not isinstance(v, list):
            self._fail(v, path, "array")
        return [self.inner.check(x, f"{path}[{i}]") for i, x in enumerate(v)]

    def json_schema(self):
        return {"type": "array", "items": self.inner.json_schema()}


class mapping(Shape):
    def __init__(self, inner):
        self.inner = inner

    def check(self, v, path):
        if not isinstance(v, dict):
            self._fail(v, path, "map")
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise Invalid(f"field '{path}': a key is {_got(k)}, not a string")
            out[k] = self.inner.check(x, f"{path}.{k}")
        return out

    def json_schema(self):
        return {"type": "object", "additionalProperties": self.inner.json_schema()}


class Message(Shape):
    """A named map of fields; unknown keys are ignored, missing ones refused unless optional."""

    def __init__(self, name, fields, schemaversion=1):
        self.name, self.fields, self.schemaversion = name, fields, schemaversion

    def check(self, v, path=""):
        if not isinstance(v, dict):
            if path:
                self._fail(v, path, "map")
            raise Invalid(f"expected a map, got {_got(v)}")
        out = {}
        for name, shape in self.fields.items():
            where = f"{path}.{name}" if path else name
            if name not in v:
                if shape.nullable:
                    out[name] = None
                    continue
                raise Invalid(f"field '{where}': missing")
            out[name] = shape.check(v[name], where)
        return out

    def json_schema(self):
        out = {"type": "object", "title": self.name,
               "properties": {n: s.json_schema() for n, s in self.fields.items()}}
        required = [n for n, s in self.fields.items() if not s.nullable]
        if required:
            out["required"] = required
        return out

    def encode(self, value):
        """What goes on the wire: checked, optional fields without a value left out."""
        checked = self.check(value)
        return {k: v for k, v in checked.items() if v is not None}


def message(name, schemaversion=1, **fields):
    return Message(name, fields, schemaversion)
