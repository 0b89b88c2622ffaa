"""A local HTTP server with the fixture pages the browser tests drive. Nothing leaves the machine.

Pages that keep "pinging" let a test see from the server's side when the browser stopped working.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests import fixture_pages as pages

FORM = b"""<!doctype html><html><head><title>Fixture form</title></head><body>
<h1 id="title">Fixture</h1>
<input id="name" type="text">
<button id="go" onclick="document.getElementById('out').textContent = 'Hello, ' +
  document.getElementById('name').value">Go</button>
<p id="out"></p>
<a id="link" href="/form.html?second=1" data-kind="internal">again</a>
</body></html>"""

PING_LOOP = """<!doctype html><html><body><h1>timer loop</h1><script>
setInterval(() => fetch('/ping?id={id}&t=' + Date.now()).catch(() => {{}}), 10);
</script></body></html>"""

PING_SCRIPT = """<!doctype html><html><body><h1>slow script</h1><script>
function spin() {{
  let last = 0;
  for (;;) {{
    const now = performance.now();
    if (now - last > 10) {{
      const x = new XMLHttpRequest();
      x.open('GET', '/ping?id={id}&t=' + Date.now(), false);
      try {{ x.send(); }} catch (e) {{}}
      last = now;
    }}
  }}
}}
</script></body></html>"""

# The same never-yielding loop, started by the page itself from a timer after load: no step
# started it, so stopping it cannot rely on the step's own evaluate being cancelled.
PING_PAGE_SCRIPT = PING_SCRIPT.replace(
    "</script>", "addEventListener('load', () => setTimeout(spin, 50));\n</script>"
).replace("slow script", "page script")


# Pages that make the browser reach `src` through one channel each (egress tests).
EMBEDS = {
    "/iframe": '<!doctype html><h1>iframe</h1><iframe src="{src}"></iframe>',
    "/image": '<!doctype html><h1>image</h1><img src="{src}">',
    "/popup": "<!doctype html><h1>popup</h1><script>window.open('{src}')</script>",
    "/websocket": (
        "<!doctype html><h1>websocket</h1><script>window.outcome = new Promise(done => {{"
        " const ws = new WebSocket('{src}'); ws.onopen = () => done('open');"
        " ws.onerror = () => done('error'); }});</script>"
    ),
}


def popups_page(count: int) -> bytes:
    """A page that opens `count` popups by script as it loads, by turns through window.open
    and a target=_blank link (no opener)."""
    script = (
        f"for (let i = 0; i < {count}; i++) {{ if (i % 2) {{ const a = "
        "document.createElement('a'); a.href = '/form.html?popup=' + i; a.target = '_blank'; "
        "document.body.appendChild(a); a.click(); } else { window.open('/form.html?popup=' + i); } }"
    )
    return f"<!doctype html><body><h1>popups</h1><script>{script}</script></body>".encode()


SIMPLE_PAGES = {
    "/login.html": pages.LOGIN,
    "/app.html": pages.APP,
    "/oauth/authorize": pages.AUTHORIZE,
    "/controls.html": pages.CONTROLS,
    "/upload.html": pages.UPLOAD,
    "/download.html": pages.DOWNLOAD,
}


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


class PingLog:
    """Pings per id: when each arrived here (time.monotonic, system-wide) and, for pings that say
    when the page sent them (`t`, the page's Date.now()), when the page sent it, on the same
    clock. The send time is the browser's side of a stop: a ping that waited in a proxy or a
    network stack arrives late, but was sent when the page still ran."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, list[float]] = defaultdict(list)
        self._sent: dict[str, list[float]] = defaultdict(list)

    def record(self, ping_id: str, sent_ms: str | None = None) -> None:
        arrived, now_ms = time.monotonic(), time.time() * 1000
        with self._lock:
            self._times[ping_id].append(arrived)
            if sent_ms is not None and sent_ms.isdigit():
                self._sent[ping_id].append(arrived - (now_ms - int(sent_ms)) / 1000)

    def times(self, ping_id: str) -> list[float]:
        with self._lock:
            return list(self._times[ping_id])

    def sent_times(self, ping_id: str) -> list[float]:
        """When the page sent each ping that carries `t`, on time.monotonic's clock."""
        with self._lock:
            return list(self._sent[ping_id])


class FixtureSite:
    def __init__(self) -> None:
        self.pings = PingLog()
        self.image_bytes = 0  # bytes of /img/ responses sent (blocking measurements)
        self.images: list[str] = []  # paths of the /img/ requests served
        self._sessions: dict[str, str] = {}  # session cookie -> user
        self._stopping = threading.Event()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                site.handle(self)

            def do_POST(self) -> None:
                site.handle_post(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self) -> FixtureSite:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        ping_id = query.get("id", "default")
        if parts.path == "/form.html":
            self._send(req, 200, FORM)
        elif parts.path == "/ping":
            self.pings.record(ping_id, query.get("t"))
            self._send(req, 204, b"")
        elif parts.path == "/ping-loop.html":
            self._send(req, 200, PING_LOOP.format(id=ping_id).encode())
        elif parts.path == "/ping-script.html":
            self._send(req, 200, PING_SCRIPT.format(id=ping_id).encode())
        elif parts.path == "/ping-page-script.html":
            self._send(req, 200, PING_PAGE_SCRIPT.format(id=ping_id).encode())
        elif parts.path == "/slow":
            # The response never arrives in time: a navigation that hangs.
            self._stopping.wait(float(query.get("seconds", "30")))
            self._send(req, 200, b"<h1>finally</h1>")
        elif parts.path == "/slow-stream":
            self._stream(req, ping_id)
        elif parts.path == "/redirect":
            req.send_response(302)
            req.send_header("Location", query["to"])
            req.send_header("Content-Length", "0")
            req.end_headers()
        elif parts.path == "/big":
            # A page of `kb` kilobytes of text, `height` CSS pixels tall.
            height = int(query.get("height", "1000"))
            text = "lorem ipsum " * (int(query.get("kb", "1")) * 1024 // 12)
            body = f'<!doctype html><div id="big" style="height:{height}px">{text}</div>'
            self._send(req, 200, body.encode())
        elif parts.path in SIMPLE_PAGES:
            self._send(req, 200, SIMPLE_PAGES[parts.path])
        elif parts.path == "/account":
            cookie = _cookie(req.headers.get("Cookie", ""), "session")
            who = self._sessions.get(cookie, "")
            body = pages.ACCOUNT.format(
                who=html.escape(f"signed in as {who}" if who else "signed out")
            )
            self._send(req, 200, body.encode())
        elif parts.path == "/heavy.html":
            self._send(req, 200, pages.heavy_page())
        elif parts.path.startswith("/img/"):
            image = b"\x89PNG" + b"\0" * (pages.HEAVY_IMAGE_KB * 1024)
            self.image_bytes += len(image)
            self.images.append(parts.path)
            self._send(req, 200, image, "image/png")
        elif parts.path == "/api/data":
            self._send(req, 200, b'{"ok": true}', "application/json")
        elif parts.path == "/file.txt":
            self._send(req, 200, b"quarterly report\n", "text/plain", "report.txt")
        elif parts.path == "/file.bin":
            blob = b"x" * (int(query.get("kb", "1")) * 1024)
            self._send(req, 200, blob, "application/octet-stream", "data.bin")
        elif parts.path == "/popups":
            self._send(req, 200, popups_page(min(int(query.get("n", "1")), 20)))
        elif parts.path in EMBEDS:
            target = html.escape(query["src"], quote=True)
            self._send(req, 200, EMBEDS[parts.path].format(src=target).encode())
        else:
            self._send(req, 404, b"not found")

    def _stream(self, req: BaseHTTPRequestHandler, ping_id: str) -> None:
        """A page that keeps loading: one chunk every 10 ms, each one a ping, until the browser hangs up."""
        req.send_response(200)
        req.send_header("Content-Type", "text/html")
        req.send_header("Cache-Control", "no-store")
        req.end_headers()
        try:
            req.wfile.write(b"<!doctype html><html><body><h1>streaming</h1>" + b" " * 2048)
            while not self._stopping.is_set():
                req.wfile.write(b"<p>.</p>\n")
                req.wfile.flush()
                self.pings.record(ping_id)
                time.sleep(0.01)
        except OSError:
            return  # the browser closed the connection: the navigation was stopped

    def handle_post(self, req: BaseHTTPRequestHandler) -> None:
        """POST /login: any user with password "secret" gets a session cookie."""
        length = int(req.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(req.rfile.read(length).decode()).items()}
        if urlsplit(req.path).path != "/login" or form.get("password") != "secret":
            self._send(req, 403, b"<h1>denied</h1>")
            return
        token = secrets.token_hex(8)
        self._sessions[token] = form.get("user", "")
        req.send_response(303)
        req.send_header("Location", "/account")
        req.send_header("Set-Cookie", f"session={token}; Path=/; HttpOnly")
        req.send_header("Content-Length", "0")
        req.end_headers()

    @staticmethod
    def _send(
        req: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str = "text/html; charset=utf-8",
        attachment: str = "",
    ) -> None:
        try:
            req.send_response(status)
            req.send_header("Content-Type", content_type)
            if attachment:
                req.send_header("Content-Disposition", f'attachment; filename="{attachment}"')
            req.send_header("Content-Length", str(len(body)))
            req.send_header("Cache-Control", "no-store")
            req.end_headers()
            req.wfile.write(body)
        except OSError:
            pass
