"""Native work (llama.cpp, the GGUF dequantiser) in a child process, so its crash is a failure with words.

llama.cpp, bitsandbytes and CUDA are native code: a bad kernel on one CPU (llama.cpp's AMX
path on Sapphire Rapids Xeons segfaulted) kills the whole process with "Segmentation fault",
taking a TUI and its screen with it. Long native work runs here instead: a fresh interpreter
(spawned, never forked, since the parent holds torch's OpenMP threads) calls one module-level
function, forwards its events to the parent as they happen and sends back its result or its
exception. A child killed by a signal becomes one `NativeCrash` naming the signal and the work;
what the parent already has (finished files, events) is untouched.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from engine.errors import ActionableError
from engine.events import EventSink, ignore

T = TypeVar("T")

CRASH_ADVICE = ("run `ftui doctor` to check this machine's llama.cpp; FTUI_LLAMA_REPACK=0 turns off llama.cpp's weight "
                "repacking, the cause of the crashes seen so far; report the crash with the log named here")


class NativeCrash(ActionableError):
    """The child doing native work died from a signal or exited without sending a result."""


def run_native(what: str, fn: Callable[..., T], *args: Any, on_event: EventSink = ignore,
               library: str = "llama.cpp", advice: str = CRASH_ADVICE, **kwargs: Any) -> T:
    """`fn(*args, on_event=..., **kwargs)` in a child process, or `fn(*args, **kwargs)` when
    `on_event` is left out; its events reach `on_event` here. `fn` must be a module-level
    function and its arguments and result picklable. An exception the child raises is raised
    here; a child that dies raises `NativeCrash`: "`library` crashed (SIGSEGV, signal 11) while `what`".

    The child is a plain `python -c`, not multiprocessing's spawn, which would run the parent's
    main script again in the child (any script without a `__main__` guard)."""
    fd, log_name = tempfile.mkstemp(prefix="ftui-native-", suffix=".log")
    log = Path(log_name)
    # The child sees the parent's import path, as multiprocessing's children do.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with os.fdopen(fd, "wb") as log_file:
        child = subprocess.Popen([sys.executable, "-c", "from engine.native.child import _child; _child()"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, env=env)
    assert child.stdin is not None and child.stdout is not None
    try:
        with child.stdin:
            pickle.dump((fn, args, kwargs, on_event is not ignore), child.stdin)
        outcome = _relay(child.stdout, on_event)
    except BaseException:
        child.kill()
        child.wait()
        raise
    finally:
        child.stdout.close()
    code = child.wait()
    if outcome is None:
        raise NativeCrash(f"{_death(library, code)} while {what}; the log of that process is {log}.", advice)
    log.unlink(missing_ok=True)
    kind, value = outcome
    if kind == "error":
        raise value
    return value


def _relay(messages: IO[bytes], on_event: EventSink) -> tuple[str, Any] | None:
    """Pass the child's events on until it sends its outcome; None when it dies without one."""
    while True:
        try:
            kind, value = pickle.load(messages)
        except EOFError:
            return None
        if kind != "event":
            return kind, value
        on_event(value)


def _death(library: str, code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"{library} crashed ({signal.Signals(-code).name}, signal {-code})"
        return f"{library} crashed (signal {-code})"
    return f"the process running {library} exited with code {code} without a result"


def _child() -> None:
    """The child's side: read the call from stdin, send events and the outcome on stdout."""
    # The parent answers Ctrl-C (and ends this process). Messages keep the real stdout; what
    # native code prints goes to the log (stderr), with a Python stack if it crashes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    messages = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    import faulthandler

    faulthandler.enable()

    def send(message: tuple[str, Any]) -> None:
        pickle.dump(message, messages)
        messages.flush()

    fn, args, kwargs, forward = pickle.load(sys.stdin.buffer)
    if forward:
        kwargs = {**kwargs, "on_event": lambda event: send(("event", event))}
    try:
        outcome: tuple[str, Any] = ("ok", fn(*args, **kwargs))
    except Exception as exc:
        outcome = ("error", exc)
    try:
        pickle.loads(pickle.dumps(outcome))
    except Exception as exc:  # what does not travel still reaches the parent, as words
        outcome = ("error", RuntimeError(f"{outcome[1]!r} (it could not be sent back: {exc})"))
    send(outcome)
    messages.close()


def _die_with_parent() -> None:
    """On Linux, end this process when the parent dies, so no orphan keeps decoding."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
