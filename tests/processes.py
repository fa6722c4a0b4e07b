"""Child processes the tests start and must always stop."""

from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen, wait_s: float) -> bool:
    """SIGTERM, then SIGKILL once `wait_s` has passed; True when the process exited by itself."""
    proc.terminate()
    try:
        proc.wait(wait_s)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False
