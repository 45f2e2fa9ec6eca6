"""A real app for the live pieces' tests: answers by path, prints on request."""

from __future__ import annotations

import textwrap

#: ``/status/N`` answers N; ``/close`` drops the connection unanswered (the router's H13);
#: ``/print?n=K&text=T`` prints T K times (flushed) and answers 200; ``/`` answers "ok".
APP = textwrap.dedent(
    """
    import http.server, os, sys, urllib.parse

    class App(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            if url.path == "/close":
                self.close_connection = True
                return
            status = 200
            if url.path.startswith("/status/"):
                status = int(url.path.rsplit("/", 1)[1])
            if url.path == "/print":
                text = query.get("text", ["hello"])[0]
                count = int(query.get("n", ["1"])[0])
                sys.stdout.write("".join(f"{text}\\n" for _ in range(count)))
                sys.stdout.flush()
            body = b"ok"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    print("app listening", flush=True)
    http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), App).serve_forever()
    """
)
PROCFILE = {"web": "exec python3 -u app.py"}
