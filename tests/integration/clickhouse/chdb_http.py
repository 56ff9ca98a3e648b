#!/usr/bin/env python3
"""A current ClickHouse engine (chdb, in-process, from PyPI) behind the part of
ClickHouse's HTTP interface cohort uses, so that cohort's own DDL, RowBinary inserts and
report queries run on it unchanged.

Prints its URL (http://127.0.0.1:PORT) on the first line of standard output, then serves
until killed or until its standard input closes (so it never outlives the test): a thread per connection (clients keep connections open), one statement at a
time. Data lives in the directory given as the only argument.

  POST /?query=INSERT INTO t (cols) FORMAT RowBinary   body: the rows
  POST /?setting=value&...                               body: a statement
"""

import http.server
import os
import re
import sys
import tempfile
import threading
import urllib.parse

from chdb import session

# Parameters of the HTTP interface that are not settings.
NOT_SETTINGS = {"query", "database", "user", "password", "wait_end_of_query", "default_format"}
INSERT = re.compile(r"^\s*INSERT INTO (\S+) \((.*)\) FORMAT RowBinary\s*$", re.S)


def main():
    data = sys.argv[1]
    db = session.Session(os.path.join(data, "chdb"))
    one_at_a_time = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, body):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            params = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with one_at_a_time:
                self.run(params, body)

        def run(self, params, body):
            try:
                for key, values in params.items():
                    if key not in NOT_SETTINGS:
                        db.query(f"SET {key} = {values[-1]}")
                query = params.get("query", [None])[-1]
                if query is None:
                    result = db.query(body.decode(), "RowBinary")
                    self.answer(200, result.bytes() if result is not None else b"")
                    return
                m = INSERT.match(query)
                if not m:
                    raise ValueError(f"only RowBinary inserts are served here: {query}")
                table, columns = m.group(1), [c.strip() for c in m.group(2).split(",")]
                types = dict(
                    line.split("\t")[:2]
                    for line in db.query(f"DESCRIBE TABLE {table}", "TabSeparated")
                    .bytes()
                    .decode()
                    .splitlines()
                )
                structure = ", ".join(f"{c} {types[c.strip('`')]}" for c in columns)
                with tempfile.NamedTemporaryFile(dir=data, suffix=".bin", delete=False) as f:
                    f.write(body)
                try:
                    db.query(
                        f"INSERT INTO {table} ({', '.join(columns)}) "
                        f"SELECT * FROM file('{f.name}', 'RowBinary', '{structure}')"
                    )
                finally:
                    os.unlink(f.name)
                self.answer(200, b"")
            except Exception as e:  # ClickHouse answers an error as text with status 500
                self.answer(500, str(e).encode())

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)

    def exit_with_parent():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=exit_with_parent, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
