"""Run a command under a seccomp profile in Docker's JSON format, without Docker.

    python scripts/seccomp_exec.py deploy/seccomp/browser-broker.json [--caps CAP,...] -- CMD...

The profile is read the way Docker and containerd read it (moby's `setupSeccomp`): the entries
for this machine's architecture, kept or dropped by their `includes`/`excludes` (architectures,
the container's capabilities, the kernel's version), then loaded the way runc loads them
(libseccomp; comparisons on the same argument become separate rules). The filter is installed in
this process, which then execs CMD: CMD and everything it starts run under it, as a container's
processes do. `--caps` is the container's capability bounding set the profile is judged against;
the default, none, is a container that drops every capability (the Helm chart's).

Names libseccomp does not know (syscalls newer than it) are left out, as runc leaves them out.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import platform
import re
import sys
from typing import Any

# libseccomp's action values (seccomp.h).
_ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_COMPARE = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
_ATTR_CTL_NNP = 3  # SCMP_FLTATR_CTL_NNP
_EPERM = 1
# platform.machine() -> the architecture names profiles use in includes/excludes (Go's).
_NATIVE = {"x86_64": "amd64", "aarch64": "arm64", "s390x": "s390x", "ppc64le": "ppc64le"}
_NATIVE_TOKEN = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64"}


class ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class ProfileError(Exception):
    """The profile cannot be loaded as written."""


def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_arch_add.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_rule_add_array.argtypes = (
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ArgCmp),
    )
    lib.seccomp_attr_set.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32)
    lib.seccomp_load.argtypes = (ctypes.c_void_p,)
    lib.seccomp_release.argtypes = (ctypes.c_void_p,)
    return lib


def native_arch() -> str:
    machine = platform.machine()
    return _NATIVE.get(machine, machine)


def _kernel_at_least(version: str) -> bool:
    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", text)[:2])

    return parts(os.uname().release) >= parts(version)


def _kept(call: dict[str, Any], arch: str, caps: set[str]) -> bool:
    """moby's setupSeccomp: whether an entry applies to this architecture and capability set."""
    excludes, includes = call.get("excludes") or {}, call.get("includes") or {}
    if arch in (excludes.get("arches") or []):
        return False
    if any(cap in caps for cap in excludes.get("caps") or []):
        return False
    if excludes.get("minKernel") and _kernel_at_least(excludes["minKernel"]):
        return False
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if any(cap not in caps for cap in includes.get("caps") or []):
        return False
    return not (includes.get("minKernel") and not _kernel_at_least(includes["minKernel"]))


def _action(name: str, errno: int | None) -> int:
    if name not in _ACTIONS:
        raise ProfileError(f"unsupported action {name!r}")
    value = _ACTIONS[name]
    if name == "SCMP_ACT_ERRNO":
        value |= _EPERM if errno is None else errno & 0xFFFF
    elif name == "SCMP_ACT_TRACE":
        value |= (errno or 0) & 0xFFFF
    return value


def applicable(profile: dict[str, Any], caps: set[str]) -> list[dict[str, Any]]:
    """The profile's entries that apply here, as the runtime would pass them on."""
    arch = native_arch()
    return [call for call in profile.get("syscalls") or [] if _kept(call, arch, caps)]


def _architectures(profile: dict[str, Any]) -> list[str]:
    token = _NATIVE_TOKEN.get(native_arch())
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == token:
            return [entry["architecture"], *(entry.get("subArchitectures") or [])]
    return list(profile.get("architectures") or [])


def _rule_sets(args: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """runc: conditions on distinct arguments make one rule (AND); two on the same argument
    make one rule each (OR)."""
    indexes = [arg["index"] for arg in args]
    if len(set(indexes)) == len(indexes):
        return [args]
    return [[arg] for arg in args]


def build(profile: dict[str, Any], caps: set[str]) -> tuple[ctypes.CDLL, int, list[str]]:
    """A libseccomp filter context for `profile`; the names left out as unknown."""
    lib = _lib()
    default = _action(profile["defaultAction"], profile.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise ProfileError("seccomp_init failed")
    for arch in _architectures(profile):
        token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
        if token == 0:
            raise ProfileError(f"unknown architecture {arch!r}")
        rc = lib.seccomp_arch_add(ctx, token)
        if rc not in (0, -17):  # -EEXIST: the native one is already there
            raise ProfileError(f"cannot add architecture {arch!r}: {os.strerror(-rc)}")
    unknown: list[str] = []
    for call in applicable(profile, caps):
        action = _action(call["action"], call.get("errnoRet"))
        if action == default:
            continue  # libseccomp refuses a rule that repeats the default
        names = call.get("names") or [call["name"]]
        for name in names:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:
                unknown.append(name)
                continue
            for conditions in _rule_sets(call.get("args") or []):
                _add(lib, ctx, action, number, name, conditions)
    return lib, ctx, unknown


def _add(
    lib: ctypes.CDLL, ctx: int, action: int, number: int, name: str, args: list[dict[str, Any]]
) -> None:
    cmps = (ArgCmp * max(len(args), 1))()
    for i, arg in enumerate(args):
        if arg["op"] not in _COMPARE:
            raise ProfileError(f"{name}: unsupported comparison {arg['op']!r}")
        cmps[i] = ArgCmp(arg["index"], _COMPARE[arg["op"]], arg["value"], arg.get("valueTwo", 0))
    rc = lib.seccomp_rule_add_array(ctx, action, number, len(args), cmps)
    if rc != 0:
        raise ProfileError(f"{name}: libseccomp refused the rule: {os.strerror(-rc)}")


def load(profile: dict[str, Any], caps: set[str]) -> list[str]:
    """Installs the profile's filter on this process (and all it will start); returns the
    names left out as unknown to libseccomp."""
    lib, ctx, unknown = build(profile, caps)
    try:
        # Like runc: no_new_privs only when the filter cannot be loaded without it.
        lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0 if os.geteuid() == 0 else 1)
        rc = lib.seccomp_load(ctx)
        if rc != 0:
            raise ProfileError(f"seccomp_load failed: {os.strerror(-rc)}")
    finally:
        lib.seccomp_release(ctx)
    return unknown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", help="a seccomp profile in Docker's JSON format")
    parser.add_argument("--caps", default="", help="the container's capabilities (CAP_X,...)")
    parser.add_argument("--verbose", action="store_true", help="list the names left out")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    options = parser.parse_args(argv)
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command:
        parser.error("no command given")
    with open(options.profile) as file:
        profile = json.load(file)
    caps = {cap.strip() for cap in options.caps.split(",") if cap.strip()}
    try:
        unknown = load(profile, caps)
    except ProfileError as exc:
        sys.exit(f"seccomp_exec: {options.profile}: {exc}")
    if options.verbose and unknown:
        print(f"seccomp_exec: unknown to libseccomp, left out: {unknown}", file=sys.stderr)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
