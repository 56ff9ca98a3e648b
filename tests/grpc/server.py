#!/usr/bin/env python3
"""A real gRPC server (Python grpcio, gRPC C-core) for cohort's tests.

gRPC C-core rejects requests without `te: trailers`, so a proxy that drops it fails here.
Service `cohort.test.Echo`, raw bytes in and out (no protoc needed):
  Say    (unary)          -> b"<name>: " + request
  Count  (server stream)  -> b"<name> 0", b"<name> 1", ... (request = ASCII count)
  Fail   (unary)          -> INVALID_ARGUMENT, message "bad input", details in trailers
  Slow   (unary)          -> sleeps 2 s, then answers

Usage: server.py NAME   (prints the port it listens on, on 127.0.0.1, then serves until
stdin closes)
"""
import sys
import time
from concurrent import futures

import grpc

name = sys.argv[1]


def say(request, context):
    return name.encode() + b": " + request


def count(request, context):
    for i in range(int(request.decode())):
        yield f"{name} {i}".encode()


def fail(request, context):
    context.set_trailing_metadata((("grpc-status-details-bin", b"\x08\x03details"),))
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad input")


def slow(request, context):
    time.sleep(2)
    return b"late"


ident = lambda b: b  # noqa: E731
handlers = {
    "Say": grpc.unary_unary_rpc_method_handler(say, ident, ident),
    "Count": grpc.unary_stream_rpc_method_handler(count, ident, ident),
    "Fail": grpc.unary_unary_rpc_method_handler(fail, ident, ident),
    "Slow": grpc.unary_unary_rpc_method_handler(slow, ident, ident),
}
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("cohort.test.Echo", handlers),))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
sys.stdin.read()
server.stop(0)
