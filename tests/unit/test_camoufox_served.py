"""A Camoufox browser served over Playwright's protocol is launched from Camoufox's own launch
options, as Camoufox's server mode launches one: the firefox (Juggler) launchServer, Camoufox's
arguments, environment (its fingerprint) and prefs, drawn afresh for each browser from the
lease's options. The broker's launcher, the lease's route as proxy, the loopback host, the secret
path and the egress prefs are the broker's, whatever Camoufox's answer says.

Camoufox's browser is not launched: `camoufox.launch_options` is replaced by a stand-in that
draws a new fingerprint per call and answers what the real one answers (and what a hostile or
changed one might), and the launch script's configuration is caught at the point it would be
written to the script's stdin; the script itself (launch_server.js) is started and stopped."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from broker.engines import camoufox as camoufox_engine
from broker.engines.camoufox_served import served_options
from broker.engines.firefox import EGRESS_PREFS
from broker.engines.playwright.served import ServedBrowsers
from broker.errors import Unavailable
from broker.model.options import CamoufoxOptions, ContextOptions

ROUTE = "http://127.0.0.1:40001"
EXECUTABLE = "/bin/true"  # what CAMOUFOX_EXECUTABLE_PATH names (the sandbox is off here)


class Route:
    server_url = ROUTE


def camoufox_answer(fingerprint: int, **extra: Any) -> dict[str, Any]:
    """What camoufox.launch_options answers (0.5.8's keys), with a fingerprint of its own."""
    return {
        "executable_path": "/elsewhere/camoufox-bin",
        "args": ["-wait-for-browser"],
        "env": {
            "CAMOU_CONFIG_1": f'{{"fingerprint": {fingerprint}}}',
            "CAMOU_PREFS_1": '{"ui.useOverlayScrollbars":1}',
            "FONTCONFIG_PATH": "/camoufox/fontconfig/linux",
            "SOME_FLAG": True,
            "UNSET": None,
        },
        "firefox_user_prefs": {
            "ui.useOverlayScrollbars": 1,
            "network.proxy.allow_hijacking_localhost": False,  # would let loopback bypass
            "network.trr.mode": 0,  # would resolve names itself
        },
        "headless": True,
        **extra,
    }


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> tuple[camoufox_engine.CamoufoxEngine, list[Any]]:
    """A Camoufox engine that believes it is installed; (the engine, launch_options' kwargs)."""
    import camoufox as package
    import camoufox.fpgen_model

    monkeypatch.setenv("CAMOUFOX_EXECUTABLE_PATH", EXECUTABLE)
    monkeypatch.setattr(camoufox.fpgen_model, "is_pinned", lambda: True)
    drawn = itertools.count(1)
    asked: list[dict[str, Any]] = []

    def launch_options(**kwargs: Any) -> dict[str, Any]:
        asked.append(kwargs)
        return camoufox_answer(next(drawn), proxy={"server": "http://10.0.0.1:3128"})

    monkeypatch.setattr(package, "launch_options", launch_options)
    engine = camoufox_engine.create()
    assert engine.availability().available, engine.availability().detail
    assert isinstance(engine, camoufox_engine.CamoufoxEngine)
    return engine, asked


async def served_config(
    engine: camoufox_engine.CamoufoxEngine,
    monkeypatch: pytest.MonkeyPatch,
    options: CamoufoxOptions | None,
) -> dict[str, Any]:
    """The configuration the launch script would be handed for one served browser."""
    served = engine.served
    assert served is not None
    caught: list[dict[str, Any]] = []

    async def start(self: ServedBrowsers, record: Any, config: dict[str, Any]) -> str:
        caught.append(config)
        raise ValueError("caught before the launch")

    monkeypatch.setattr(ServedBrowsers, "_start", start)
    launcher = await engine._serve(served, options, ContextOptions(), Route())  # type: ignore[arg-type]
    with pytest.raises(Unavailable, match="firefox failed to launch"):
        await launcher(None)  # type: ignore[arg-type]
    await served.stopped()  # the script was stopped, its folders removed
    assert len(caught) == 1
    return caught[0]


async def test_a_served_camoufox_is_launched_from_camoufox_options_under_the_broker_own(
    engine: tuple[camoufox_engine.CamoufoxEngine, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    camoufox, asked = engine
    lease_options = CamoufoxOptions(os=("windows",), locales=("de-DE",), block_webrtc=True)
    config = await served_config(camoufox, monkeypatch, lease_options)
    assert config["browser"] == "firefox"  # Juggler's launchServer, as Camoufox's server
    options = config["options"]
    # The lease's options reached camoufox.launch_options, with the broker's own.
    (kwargs,) = asked
    assert kwargs["os"] == ["windows"] and kwargs["locale"] == ["de-DE"]
    assert kwargs["block_webrtc"] is True and kwargs["executable_path"] == EXECUTABLE
    assert kwargs["firefox_user_prefs"] == EGRESS_PREFS  # applied at startup by Camoufox too
    # Camoufox's fingerprint: its arguments and environment, every value a string.
    assert options["args"] == ["-wait-for-browser"]
    env = options["env"]
    assert env["CAMOU_CONFIG_1"] == '{"fingerprint": 1}'
    assert env["CAMOU_PREFS_1"] and env["FONTCONFIG_PATH"] == "/camoufox/fontconfig/linux"
    assert env["SOME_FLAG"] == "True" and "UNSET" not in env
    # Camoufox's prefs, with the broker's egress prefs over them.
    prefs = options["firefoxUserPrefs"]
    assert prefs["ui.useOverlayScrollbars"] == 1
    for name, value in EGRESS_PREFS.items():
        assert prefs[name] == value, name
    # The broker's: its executable (not Camoufox's answer), the route, loopback, a secret path.
    assert options["executablePath"] == EXECUTABLE
    assert options["proxy"] == {"server": ROUTE}
    assert options["host"] == "127.0.0.1" and options["port"] == 0
    assert len(options["wsPath"]) > 40 and options["headless"] is True
    assert {"handleSIGINT", "handleSIGTERM", "handleSIGHUP"} <= set(options)
    assert not any(options[k] for k in ("handleSIGINT", "handleSIGTERM", "handleSIGHUP"))
    assert "executable_path" not in options and "firefox_user_prefs" not in options


async def test_each_served_camoufox_draws_a_fingerprint_of_its_own(
    engine: tuple[camoufox_engine.CamoufoxEngine, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    camoufox, asked = engine
    first = await served_config(camoufox, monkeypatch, None)
    second = await served_config(camoufox, monkeypatch, None)
    assert len(asked) == 2
    fingerprints = {c["options"]["env"]["CAMOU_CONFIG_1"] for c in (first, second)}
    assert len(fingerprints) == 2
    assert first["options"]["wsPath"] != second["options"]["wsPath"]


def test_a_key_camoufox_never_answered_is_refused_by_name() -> None:
    with pytest.raises(Unavailable, match="'executablePath'"):
        served_options(camoufox_answer(1, executablePath="/tmp/evil"))
    with pytest.raises(Unavailable, match="'ignore_default_args'"):
        served_options(camoufox_answer(1, ignore_default_args=True))


def test_only_what_carries_the_fingerprint_is_taken() -> None:
    own = served_options(camoufox_answer(7, proxy={"server": "http://10.0.0.1:3128"}))
    assert set(own) == {"args", "env", "firefoxUserPrefs", "headless"}
    assert own["firefoxUserPrefs"]["network.proxy.allow_hijacking_localhost"] is True
    assert own["firefoxUserPrefs"]["network.trr.mode"] == 5


def test_an_unavailable_camoufox_serves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMOUFOX_EXECUTABLE_PATH", "/nonexistent/camoufox")
    engine = camoufox_engine.create()
    assert not engine.availability().available
    assert isinstance(engine, camoufox_engine.CamoufoxEngine) and engine.served is None


async def test_the_broker_contexts_in_a_served_camoufox_get_camoufox_defaults() -> None:
    from broker.engines.camoufox_served import with_camoufox_defaults

    class Browser:
        def __init__(self) -> None:
            self.asked: list[dict[str, Any]] = []

        async def new_context(self, **kwargs: Any) -> None:
            self.asked.append(kwargs)

        async def new_page(self, **kwargs: Any) -> None:
            self.asked.append(kwargs)

    spoofed, plain = Browser(), Browser()
    window = camoufox_answer(2)
    window["env"]["CAMOU_CONFIG_1"] = '{"window.outerWidth": 1280}'
    with_camoufox_defaults(spoofed, window)  # type: ignore[arg-type]
    with_camoufox_defaults(plain, camoufox_answer(3))  # type: ignore[arg-type]
    await spoofed.new_context(color_scheme="dark")
    await plain.new_context()
    # No viewport while the window is spoofed; the host's media features unless asked.
    assert spoofed.asked[0]["no_viewport"] is True and spoofed.asked[0]["color_scheme"] == "dark"
    assert "no_viewport" not in plain.asked[0]
    assert plain.asked[0]["color_scheme"] == "no-override"
