"""troupe's Python peer: a service of a troupe mesh written in Python, with the same
promise as the C++ node (docs/protocol.md, docs/guarantees.md)."""
from .node import VERSION, Context, Node, QueryContext, Refused
from .schema import (Invalid, Message, binary, boolean, double, int32, int64, mapping, message, optional,
                     string, uint32, uint64, vector)
from .service import service_main

__all__ = ["VERSION", "Context", "Node", "QueryContext", "Refused", "Invalid", "Message", "message", "binary",
           "boolean", "double", "int32", "int64", "uint32", "uint64", "string", "optional", "vector", "mapping",
           "service_main"]
