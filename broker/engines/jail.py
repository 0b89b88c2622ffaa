"""A filesystem jail for every browser process (bubblewrap), and the browsers' own URL blocking.

Behind the edge's URL checks, a browser must have no way to the host's files. Each browser is
started inside `bwrap`: the system's programs and libraries read-only, the few parts of /etc a
browser needs, a private /tmp, /dev and /proc, and read-write only the directories Playwright
hands that browser (its profile, and the downloads folder). Not there: /root, /home, the
broker's data_dir (every tenant's traces), the project tree, the rest of /etc, other browsers'
profiles. The browser's own sandbox keeps working inside (bwrap makes an unprivileged user
namespace, in which Chromium makes its own).

Inside the jail only, managed policies make the browsers refuse `file:` and their internal
pages themselves: Chromium's URLBlocklist and Firefox's enterprise policies.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("broker.engines")

# The parts of /etc a browser needs: the loader, fonts, certificates, time zone, MIME types.
_ETC = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "fonts",
    "ssl",
    "ca-certificates",
    "localtime",
    "timezone",
    "mime.types",
    "nsswitch.conf",
    "alternatives",
    "chromium.d",  # Debian's /usr/bin/chromium wrapper reads its default flags here
    "firefox-esr",
    "gtk-3.0",
)
_READ_ONLY = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/opt")
_FONT_CACHE = "/var/cache/fontconfig"

# Chromium: no file:, no internal page that shows the host or its settings; about:blank stays.
_CHROMIUM_BLOCKED = [
    "chrome://*",
    "chrome-untrusted://*",
    "devtools://*",
    "view-source:*",
    "chrome-search://*",
    "about:*",
]
_CHROMIUM_ALLOWED = ["about:blank", "chrome://newtab", "chrome://new-tab-page"]
# Firefox: file: refused (its WebsiteFilter takes no view-source: pattern; WebDriver BiDi
# refuses view-source: and about: navigations itself); the about: pages that expose the host
# blocked.
_FIREFOX_BLOCKED = ["file:///*"]


@dataclass(frozen=True)
class Jail:
    """How browsers are jailed: the bwrap program and the generated files bound into the jail."""

    bwrap: str
    files: Path  # generated policies, passwd and group (read-only inside)

    def command(self, executable: str) -> str:
        """The shell words that start `executable` jailed; "$profile" and "$downloads" (set by
        the launcher) are bound read-write when set."""
        words = [
            self.bwrap,
            "--die-with-parent",  # the browser never outlives the launcher Playwright watches
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--tmpfs",
            "/dev/shm",
        ]
        for top in _READ_ONLY:
            words += _mirror(top)
        for name in _ETC:
            words += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        words += ["--ro-bind-try", _FONT_CACHE, _FONT_CACHE]
        words += _real_dir(executable)
        for generated, inside in (
            ("passwd", "/etc/passwd"),
            ("group", "/etc/group"),
            ("chromium-policy.json", "/etc/chromium/policies/managed/browser-broker.json"),
            ("firefox-policies.json", "/etc/firefox/policies/policies.json"),
        ):
            words += ["--ro-bind", str(self.files / generated), inside]
        quoted = [shlex.quote(word) for word in words]
        # A private home for caches and settings, gone with the jail.
        quoted += ["--dir", "/tmp/home", "--setenv", "HOME", "/tmp/home"]
        quoted += ["--setenv", "XDG_CONFIG_HOME", "/tmp/home/.config"]
        quoted += ["--setenv", "XDG_CACHE_HOME", "/tmp/home/.cache", "--chdir", "/tmp/home"]
        quoted += ['${profile:+--bind "$profile" "$profile"}']
        quoted += ['${downloads:+--bind-try "$downloads" "$downloads"}']
        return " ".join([*quoted, "--", shlex.quote(executable)])


def _mirror(top: str) -> list[str]:
    """The host's `top` inside the jail: the same symlink (merged /usr), or a read-only bind."""
    if os.path.islink(top):
        return ["--symlink", os.readlink(top), top]
    return ["--ro-bind-try", top, top]


def _real_dir(executable: str) -> list[str]:
    """The browser's own directory, read-only, when it lies outside the system's (a
    Playwright-managed build)."""
    folder = os.path.dirname(os.path.realpath(executable))
    if any(folder == top or folder.startswith(top + "/") for top in _READ_ONLY):
        return []
    return ["--ro-bind", folder, folder]


def prepare(uid: int, gid: int, user_name: str, allow_file_urls: bool) -> Jail | str:
    """The jail for browsers running as `uid`, or why there can be none here."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    files = Path(tempfile.mkdtemp(prefix="browser-broker-jail-"))
    atexit.register(shutil.rmtree, files, True)
    files.chmod(0o755)
    _write(
        files / "passwd",
        f"root:x:0:0::/:/bin/false\n{user_name}:x:{uid}:{gid}::/tmp/home:/bin/false\n",
    )
    _write(files / "group", f"root:x:0:\n{user_name}:x:{gid}:\n")
    _write(files / "chromium-policy.json", json.dumps(chromium_policy(allow_file_urls), indent=1))
    _write(files / "firefox-policies.json", json.dumps(firefox_policies(allow_file_urls), indent=1))
    jail = Jail(bwrap, files)
    problem = _probe(jail, uid, gid)
    return problem or jail


def chromium_policy(allow_file_urls: bool) -> dict[str, object]:
    blocked = list(_CHROMIUM_BLOCKED) + ([] if allow_file_urls else ["file://*"])
    return {
        "URLBlocklist": blocked,
        "URLAllowlist": _CHROMIUM_ALLOWED,
        "DownloadRestrictions": 0,
        # WebRTC without UDP, as the launch flag also says: a second hold, since Chromium once
        # dropped the flag's old spelling without a word.
        "WebRtcIPHandling": "disable_non_proxied_udp",
    }


def firefox_policies(allow_file_urls: bool) -> dict[str, object]:
    blocked = [] if allow_file_urls else list(_FIREFOX_BLOCKED)
    return {
        "policies": {
            "WebsiteFilter": {"Block": blocked},
            "BlockAboutConfig": True,
            "BlockAboutProfiles": True,
            "BlockAboutSupport": True,
            "BlockAboutAddons": True,
            "DisableTelemetry": True,
            "DisableAppUpdate": True,
        }
    }


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o644)


def _probe(jail: Jail, uid: int, gid: int) -> str:
    """ "" if bwrap can build the jail here for `uid` (a kernel without unprivileged user
    namespaces, or a container that forbids them, cannot); else why not."""
    script = f"exec {jail.command('/bin/true')}"
    as_user: dict[str, object] = {}
    if os.geteuid() != uid:
        as_user = {"user": uid, "group": gid, "extra_groups": []}
    try:
        done = subprocess.run(  # type: ignore[call-overload]
            ["/bin/sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=10,
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            **as_user,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap could not run: {exc}"
    if done.returncode != 0:
        return f"bubblewrap cannot build the jail here: {done.stderr.strip()[:200]}"
    return ""
