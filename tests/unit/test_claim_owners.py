"""Who holds a claim (msgcenter.workflows.owners): a token that names the machine, its boot, the
process and its start, and whether that process still runs."""

from __future__ import annotations

import subprocess
import sys

from msgcenter.workflows.owners import ClaimOwner


def test_a_token_names_the_machine_and_reads_back():
    me = ClaimOwner.this_process("exec-1")
    assert me.token.startswith(me.machine) and me.machine.startswith("exec-1|")
    assert ClaimOwner.parse(me.token) == me
    assert ClaimOwner.parse("not|a|token") is None
    assert ClaimOwner.parse("w|boot|pid|start") is None


def test_the_running_process_is_alive_and_a_finished_one_is_not():
    me = ClaimOwner.this_process("exec-1")
    assert me.is_alive()
    # the same pid with another start time is another process (a pid reused after a restart)
    assert not ClaimOwner(me.worker_id, me.boot, me.pid, me.started + 1).is_alive()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not ClaimOwner(me.worker_id, me.boot, child.pid, me.started).is_alive()


def test_the_host_name_is_the_default_worker_id():
    import socket

    assert ClaimOwner.this_process().worker_id == socket.gethostname()
