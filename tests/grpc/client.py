#!/usr/bin/env python3
"""A real gRPC client (Python grpcio) for cohort's tests: calls one method and prints the
outcome as one JSON line: {"code": "OK"|status name, "details", "replies", "trailers",
"initial"} (initial = response header metadata, where cohort's x-cohort-* headers are).

Usage: client.py TARGET METHOD REQUEST [USER]
"""
import json
import sys

import grpc

target, method, request = sys.argv[1], sys.argv[2], sys.argv[3].encode()
user = sys.argv[4] if len(sys.argv) > 4 else "alice"
ident = lambda b: b  # noqa: E731
channel = grpc.insecure_channel(target)
metadata = (("x-user-id", user),)
out = {"code": "OK", "details": None, "replies": [], "trailers": {}, "initial": {}}
try:
    if method == "Count":
        call = channel.unary_stream(f"/cohort.test.Echo/{method}", ident, ident)(request, metadata=metadata, timeout=10)
        for reply in call:
            out["replies"].append(reply.decode())
    else:
        fn = channel.unary_unary(f"/cohort.test.Echo/{method}", ident, ident)
        reply, call = fn.with_call(request, metadata=metadata, timeout=10)
        out["replies"].append(reply.decode())
    out["initial"] = {k: v for k, v in call.initial_metadata() if isinstance(v, str)}
    out["trailers"] = {k: (v if isinstance(v, str) else v.hex()) for k, v in call.trailing_metadata() or ()}
except grpc.RpcError as e:
    out["code"] = e.code().name
    out["details"] = e.details()
    out["trailers"] = {k: (v if isinstance(v, str) else v.hex()) for k, v in (e.trailing_metadata() or ())}
    out["initial"] = {k: v for k, v in (e.initial_metadata() or ()) if isinstance(v, str)}
print(json.dumps(out))
