"""How a command ends other than by finishing: a user mistake (UserError: one line, exit 2), and a stop by
Ctrl-C, SIGTERM or SIGHUP (Stopped: the rows so far kept, exit 128 + the signal); and die_with_parent, so a
process a command starts never outlives it."""


class UserError(Exception):
    """A mistake in what the user asked for (unknown model, bad size, unreadable file).

    The CLI prints the message as one line and exits with code 2; no traceback.
    """


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP to a command (a CI job's timeout, `kill`, a closed terminal), raised in the main
    thread by the handler `stop_on_signals` installs. A KeyboardInterrupt, so every place that keeps the rows
    measured so far on Ctrl-C keeps them here too; the exit status is 128 + the signal's number."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def stop_on_signals() -> dict:
    """SIGTERM and SIGHUP raise Stopped from now on, as Ctrl-C raises KeyboardInterrupt; returns the handlers
    it replaced (signal number -> handler) for `restore_signals`. Main thread only (Python's rule)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        return {}
    return {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGTERM, signal.SIGHUP)}


def restore_signals(previous: dict) -> None:
    import signal

    for sig, handler in previous.items():
        signal.signal(sig, handler)


def stop_status(exc: KeyboardInterrupt) -> int:
    """The exit status of a command stopped by `exc`: 130 for Ctrl-C, 128 + N for signal N."""
    return 128 + getattr(exc, "signum", 2)


def stop_name(exc: KeyboardInterrupt) -> str:
    """How a note names what stopped a command: "Ctrl-C", or the signal (SIGTERM, SIGHUP)."""
    return str(exc) if isinstance(exc, Stopped) else "Ctrl-C"


def die_with_parent(parent_pid: int | None = None, orphan: bool = False) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (PR_SET_PDEATHSIG), as the GPU check's steps
    do: the launcher runs torchrun in a session of its own and torchrun its ranks, so a SIGKILLed launcher
    (which can clean nothing up) would otherwise leave torchrun and every rank running, still measuring and
    rewriting the results file. Called in torchrun before exec (`parent_pid`: the launcher's), and by each rank
    as it starts (`orphan`: its parent is already gone when it is init's child)."""
    import os
    import signal

    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: nothing to ask
        return
    if (parent_pid is not None and os.getppid() != parent_pid) or (orphan and os.getppid() == 1):
        os._exit(128 + signal.SIGKILL)  # the parent died before the request: it is gone already
