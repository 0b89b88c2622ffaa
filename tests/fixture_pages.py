"""Fixture pages for the steps real sites need: a login form, an OAuth-like popup, controls, an
upload form, a download, and a page heavy with images."""

from __future__ import annotations

LOGIN = b"""<!doctype html><html><head><title>Sign in</title></head><body>
<form id="login" method="post" action="/login">
<input id="user" name="user"><input id="password" name="password" type="password">
<button id="submit" type="submit">Sign in</button></form>
<script>document.getElementById('login').addEventListener('submit', () =>
  localStorage.setItem('user', document.getElementById('user').value));</script>
</body></html>"""

ACCOUNT = """<!doctype html><html><head><title>Account</title></head><body>
<h1 id="who">{who}</h1><p id="stored"></p>
<script>document.getElementById('stored').textContent = localStorage.getItem('user') || '';</script>
</body></html>"""

APP = b"""<!doctype html><html><head><title>App</title></head><body>
<button id="oauth" onclick="window.open('/oauth/authorize?client=app', 'oauth')">Connect</button>
<a id="blank" target="_blank" href="/form.html?from=blank">new tab</a>
<p id="status">not connected</p>
<script>window.addEventListener('message', (e) => {
  document.getElementById('status').textContent = 'connected: ' + e.data.code; });</script>
</body></html>"""

AUTHORIZE = b"""<!doctype html><html><head><title>Authorize</title></head><body>
<button id="approve" onclick="window.opener.postMessage({code: 'c0de'}, '*'); window.close()">
Approve</button></body></html>"""

CONTROLS = b"""<!doctype html><html><head><title>Controls</title></head><body>
<div id="hoverme" onmouseenter="document.getElementById('hovered').textContent = 'yes'">hover</div>
<p id="hovered">no</p>
<input id="agree" type="checkbox">
<select id="color"><option value="r">Red</option><option value="g">Green</option>
<option value="b">Blue</option></select>
<input id="typed" onkeydown="window.keys = (window.keys || 0) + 1">
<button id="fetch" onclick="setTimeout(() => fetch('/api/data?x=1'), 200)">fetch</button>
<button id="later" onclick="setTimeout(() => { window.ready = 'now'; }, 200)">later</button>
<button id="push" onclick="setTimeout(() => history.pushState({}, '', '/controls.html?step=2'), 200)">
push</button>
<div style="height: 5000px"></div><p id="bottom">bottom</p>
</body></html>"""

UPLOAD = b"""<!doctype html><html><head><title>Upload</title></head><body>
<input id="file" type="file" multiple>
<script>window.files = () => Promise.all([...document.getElementById('file').files].map(
  async f => ({name: f.name, type: f.type, text: await f.text()})));</script>
</body></html>"""

DOWNLOAD = b"""<!doctype html><html><head><title>Download</title></head><body>
<a id="file" href="/file.txt">report</a>
<a id="big" href="/file.bin?kb=64">big</a>
</body></html>"""

HEAVY_IMAGES = 12
HEAVY_IMAGE_KB = 256


def heavy_page() -> bytes:
    images = "".join(f'<img src="/img/{i}.png" width="10">' for i in range(HEAVY_IMAGES))
    return f"<!doctype html><html><body><h1>heavy</h1>{images}</body></html>".encode()
